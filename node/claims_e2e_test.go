package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/loopgate/loopgate/camera/synth"
	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/internal/walkfixture"
	"github.com/loopgate/loopgate/server"
)

// TestClaimsOneToOne drives 1:1 mode through the real HTTP API on a
// SYNTHETIC clip whose walkers come in the order enrolled A, stranger S,
// enrolled B:
//   - a claim for A made before A appears binds to A's track: open, verified
//     1:1 against A only (the decision names the claim);
//   - a claim for B made while the stranger approaches binds to the
//     stranger: deny claim_mismatch (no false open for B);
//   - a claim with a 1 s time to live that no face confirms: deny
//     claim_expired; B is then decided 1:N as usual.
func TestClaimsOneToOne(t *testing.T) {
	cfgClip := synth.DefaultConfig()
	cfgClip.Seed = 5
	cfgClip.GapSeconds = 2.5 // room for the expiring claim between walkers
	picked := vettedWalkers(t, 2, 1, cfgClip.Seed)
	var enrolled, strangers []synth.Walker
	for _, w := range picked {
		if w.Enrolled {
			enrolled = append(enrolled, w)
		} else {
			strangers = append(strangers, w)
		}
	}
	fx := walkfixture.New(t, cfgClip, []synth.Walker{enrolled[0], strangers[0], enrolled[1]}, 0)
	a, b := walkerID(fx.Manifest.Walkers[0]), walkerID(fx.Manifest.Walkers[2])

	cfg := testConfig(t, fx, false)
	secret, hash, err := server.NewTokenSecret()
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.HTTP.Tokens = []TokenConfig{{Name: "lane-a-reader", SHA256: hash, Roles: []string{"lane"}}}
	cfg.Claims.Enabled = true
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	col := &collector{}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n, err := New(ctx, cfg, Options{Sinks: []decision.Sink{col}, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	claim := func(id string, ttl int) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"lane": "a", "external_id": id, "ttl_seconds": ttl})
		req, _ := http.NewRequest(http.MethodPost, "http://"+n.Addr()+"/api/v1/claims", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("claim %s: HTTP %d", id, resp.StatusCode)
		}
	}
	waitFor := func(count int) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); len(col.all()) < count; {
			if time.Now().After(deadline) {
				t.Fatalf("waited for %d decisions, have %+v", count, col.all())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	claim(a, 10)
	waitFor(1) // A decided
	claim(b, 10)
	waitFor(2) // the stranger decided
	claim(b, 1)
	waitFor(3) // the short claim expired before B's first quality frame
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	n.sinks.Close()
	events := col.all()
	for _, e := range events {
		t.Logf("decision %s/%s person=%s claim=%q distance=%s threshold=%.2f frames=%d", e.Decision, e.Reason, personOf(e), e.Claim, fmtPtr(e.Distance), e.Threshold, e.FramesUsed)
	}
	want := []struct {
		outcome decision.Outcome
		reason  decision.Reason
		person  string
		claim   string
	}{
		{decision.Open, decision.Matched, a, a},
		{decision.Deny, decision.ClaimMismatch, "", b},
		{decision.Deny, decision.ClaimExpired, "", b},
		{decision.Open, decision.Matched, b, ""},
	}
	if len(events) != len(want) {
		t.Fatalf("%d decisions, want %d", len(events), len(want))
	}
	for i, w := range want {
		e := events[i]
		got := fmt.Sprintf("%s/%s person=%s claim=%s", e.Decision, e.Reason, personOf(e), e.Claim)
		wantS := fmt.Sprintf("%s/%s person=%s claim=%s", w.outcome, w.reason, orDash(w.person), w.claim)
		if got != wantS {
			t.Errorf("decision %d: got %s, want %s", i, got, wantS)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
