package fuse

import (
	"math"
	"testing"
	"time"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/decision"
)

var rule = Rule{Threshold: 0.45, Margin: 0.05, MinFrames: 3, MaxFrames: 8, ClaimThreshold: 0.5}

func person(id string, d float64) engine.PersonMatch {
	return engine.PersonMatch{ExternalID: id, Name: id, Distance: d, Registration: engine.Registration{Status: engine.StatusActive}}
}

func TestMeanIsWeighted(t *testing.T) {
	var m Mean
	var a, b engine.Embedding
	a[0], b[0] = 1, 0
	m.Add(a, 3)
	m.Add(b, 1)
	if got := m.Embedding()[0]; math.Abs(float64(got)-0.75) > 1e-6 || m.N() != 2 {
		t.Fatalf("mean %v n %d", got, m.N())
	}
}

func TestIdentify(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	past, future := now.Add(-time.Hour), now.Add(time.Hour)
	revoked := person("R", 0.3)
	revoked.Registration = engine.Registration{Status: engine.StatusRevoked, RevokedReason: "badge lost", RevokedAt: &past}
	expired := person("E", 0.3)
	expired.Registration.ValidUntil = &past
	notYet := person("N", 0.3)
	notYet.Registration.ValidFrom = &future
	cases := []struct {
		name    string
		matches []engine.PersonMatch
		n       int
		final   bool
		decided bool
		outcome decision.Outcome
		reason  decision.Reason
	}{
		{"too few frames waits", []engine.PersonMatch{person("A", 0.2)}, 2, false, false, "", ""},
		{"too few frames at track end", []engine.PersonMatch{person("A", 0.2)}, 2, true, true, decision.Deny, decision.NoUsableCapture},
		{"clear match opens", []engine.PersonMatch{person("A", 0.30), person("B", 0.6)}, 3, false, true, decision.Open, decision.Matched},
		{"only person in scope opens", []engine.PersonMatch{person("A", 0.30)}, 3, false, true, decision.Open, decision.Matched},
		{"at threshold opens", []engine.PersonMatch{person("A", 0.45)}, 3, false, true, decision.Open, decision.Matched},
		{"above threshold keeps fusing", []engine.PersonMatch{person("A", 0.46)}, 3, false, false, "", ""},
		{"above threshold at max frames", []engine.PersonMatch{person("A", 0.46)}, 8, false, true, decision.Deny, decision.UnknownFace},
		{"above threshold at track end", []engine.PersonMatch{person("A", 0.46)}, 4, true, true, decision.Deny, decision.UnknownFace},
		{"two close people wait", []engine.PersonMatch{person("A", 0.30), person("B", 0.34)}, 3, false, false, "", ""},
		{"two close people deny at end", []engine.PersonMatch{person("A", 0.30), person("B", 0.34)}, 5, true, true, decision.Deny, decision.Ambiguous},
		{"empty gallery", nil, 8, false, true, decision.Deny, decision.UnknownFace},
		{"revoked", []engine.PersonMatch{revoked}, 3, false, true, decision.Deny, decision.Revoked},
		{"expired", []engine.PersonMatch{expired}, 3, false, true, decision.Deny, decision.Expired},
		{"not yet valid", []engine.PersonMatch{notYet}, 3, false, true, decision.Deny, decision.Expired},
	}
	for _, c := range cases {
		v := rule.Identify(c.matches, c.n, now, c.final)
		if v.Decided != c.decided || v.Outcome != c.outcome || v.Reason != c.reason {
			t.Errorf("%s: got decided=%v %s/%s (%s), want %v %s/%s", c.name, v.Decided, v.Outcome, v.Reason, v.Detail, c.decided, c.outcome, c.reason)
		}
		if v.Outcome == decision.Open && (v.Person == nil || v.Distance == nil) {
			t.Errorf("%s: open without person or distance", c.name)
		}
	}
}

func TestVerifyClaim(t *testing.T) {
	now := time.Now()
	if v := rule.Verify(person("A", 0.49), 3, now, false); v.Outcome != decision.Open {
		t.Errorf("claim within threshold: %+v", v)
	}
	if v := rule.Verify(person("A", 0.51), 3, now, false); v.Decided {
		t.Errorf("claim above threshold decided early: %+v", v)
	}
	if v := rule.Verify(person("A", 0.51), 3, now, true); v.Reason != decision.ClaimMismatch {
		t.Errorf("claim above threshold at end: %+v", v)
	}
}

func TestRuleValidate(t *testing.T) {
	if err := rule.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Rule{
		{Threshold: 0, Margin: 0, MinFrames: 3, MaxFrames: 8, ClaimThreshold: 0.5},
		{Threshold: 0.4, Margin: 0.5, MinFrames: 3, MaxFrames: 8, ClaimThreshold: 0.5},
		{Threshold: 0.4, Margin: 0, MinFrames: 0, MaxFrames: 8, ClaimThreshold: 0.5},
		{Threshold: 0.4, Margin: 0, MinFrames: 3, MaxFrames: 2, ClaimThreshold: 0.5},
	} {
		if bad.Validate() == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}
