package enroll_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/enroll"
	"github.com/loopgate/loopgate/internal/testenv"
)

var (
	admin   = enroll.Actor{Name: "ada", Kind: "account", Role: enroll.RoleAdmin, RemoteAddr: "192.0.2.1"}
	officer = enroll.Actor{Name: "otto", Kind: "account", Role: enroll.RoleOfficer, RemoteAddr: "192.0.2.2"}
)

type registryStack struct {
	pool *pgxpool.Pool
	reg  *enroll.Registry
	acc  *enroll.Accounts
}

func newRegistry(t *testing.T, vault *enroll.PhotoVault) *registryStack {
	t.Helper()
	st := newStack(t)
	reg, err := enroll.NewRegistry(enroll.RegistryConfig{Pool: st.g.Pool(), Checker: &enroll.Service{Stills: st.svc.Stills, Model: st.svc.Model}, Vault: vault})
	if err != nil {
		t.Fatal(err)
	}
	return &registryStack{pool: st.g.Pool(), reg: reg, acc: enroll.NewAccounts(st.g.Pool())}
}

// goodPhotos returns the first n photos of an LFW person that pass the
// enrolment checks (the profile refuses about half of LFW's news photos).
func (s *registryStack) goodPhotos(t *testing.T, name string, n int) []enroll.Photo {
	t.Helper()
	var out []enroll.Photo
	for i := 1; i <= 30 && len(out) < n; i++ {
		rel := fmt.Sprintf("datasets/lfw/images/%s/%s_%04d.jpg", name, name, i)
		if _, err := os.Stat(filepath.Join(testenv.SharedDir(t), rel)); err != nil {
			break
		}
		p := photo(t, rel)
		if s.reg.CheckPhoto(context.Background(), p).Accepted {
			out = append(out, p)
		}
	}
	if len(out) < n {
		t.Fatalf("%s: only %d photos pass the enrolment checks, want %d", name, len(out), n)
	}
	return out
}

func (s *registryStack) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestRegistryLifecycleAndDeleteLeavesNoFace(t *testing.T) {
	ctx := context.Background()
	s := newRegistry(t, nil)
	powell := s.goodPhotos(t, "Colin_Powell", 2)
	until := time.Now().Add(90 * 24 * time.Hour).UTC().Truncate(time.Second)
	res, err := s.reg.Create(ctx, officer, enroll.PersonInput{
		ExternalID: "HK-0001", Name: "Colin Powell", Organisation: "State Dept", HomePark: enroll.ParkHongKong,
		Gates: []string{"bridge-b", "bridge-a", "bridge-a"}, ValidUntil: &until,
	}, powell[:1], enroll.PhotoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := res.Person
	if res.Added != 1 || p.Templates != 1 || p.Status != "active" || p.HomePark != "hk" || strings.Join(p.Gates, ",") != "bridge-a,bridge-b" ||
		p.ValidUntil == nil || !p.ValidUntil.Equal(until) {
		t.Fatalf("created %+v (added %d)", p, res.Added)
	}
	if rep := res.Photos[0]; !rep.Accepted || rep.FaceBox == nil || rep.Quality.Measures.InterEyePx < 40 || len(rep.SHA256) != 64 {
		t.Fatalf("report %+v", rep)
	}

	// A second photo of the same person is added; the same photo again is not.
	if _, err := s.reg.AddPhotos(ctx, officer, "HK-0001", powell[1:2], enroll.PhotoOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = s.reg.AddPhotos(ctx, officer, "HK-0001", powell[1:2], enroll.PhotoOptions{})
	var pe *enroll.PhotosError
	if !errors.As(err, &pe) || pe.Photos[0].Reasons[0].Code != enroll.ReasonAlreadyEnrolled {
		t.Fatalf("same photo twice: %v", err)
	}

	// Conflicting id.
	if _, err := s.reg.Create(ctx, officer, enroll.PersonInput{ExternalID: "HK-0001", Name: "X", HomePark: "sz"}, nil, enroll.PhotoOptions{}); !errors.Is(err, enroll.ErrConflict) {
		t.Fatalf("conflicting id: %v", err)
	}
	// Bad fields name themselves.
	for _, in := range []enroll.PersonInput{
		{ExternalID: "bad id", Name: "X", HomePark: "hk"},
		{ExternalID: "ok", Name: "", HomePark: "hk"},
		{ExternalID: "ok", Name: "X", HomePark: "mo"},
		{ExternalID: "ok", Name: "X", HomePark: "hk", Gates: []string{"no spaces"}},
		{ExternalID: "ok", Name: "X", HomePark: "hk", ValidFrom: &until, ValidUntil: &until},
	} {
		var fe *enroll.FieldError
		if _, err := s.reg.Create(ctx, officer, in, nil, enroll.PhotoOptions{}); !errors.As(err, &fe) {
			t.Fatalf("%+v: %v, want a FieldError", in, err)
		}
	}

	// Update: patch semantics.
	p, err = s.reg.Update(ctx, officer, "HK-0001", enroll.PersonPatch{
		Organisation: enroll.Some("Retired"), Gates: enroll.Some([]string{"bridge-c"}), ValidUntil: enroll.Some[*time.Time](nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Organisation != "Retired" || p.Name != "Colin Powell" || strings.Join(p.Gates, ",") != "bridge-c" || p.ValidUntil != nil || p.Templates != 2 {
		t.Fatalf("updated %+v", p)
	}

	// Revoke and reinstate, each once.
	if p, err = s.reg.Revoke(ctx, officer, "HK-0001", "badge lost"); err != nil || p.Status != "revoked" || p.RevokedReason != "badge lost" || p.RevokedAt == nil {
		t.Fatalf("revoke: %+v %v", p, err)
	}
	if _, err := s.reg.Revoke(ctx, officer, "HK-0001", "again"); !errors.Is(err, enroll.ErrAlreadyRevoked) {
		t.Fatalf("second revoke: %v", err)
	}
	if p, err = s.reg.Reinstate(ctx, officer, "HK-0001"); err != nil || p.Status != "active" || p.RevokedAt != nil {
		t.Fatalf("reinstate: %+v %v", p, err)
	}
	if _, err := s.reg.Reinstate(ctx, officer, "HK-0001"); !errors.Is(err, enroll.ErrNotRevoked) {
		t.Fatalf("second reinstate: %v", err)
	}

	// Templates are listed without embeddings.
	ts, err := s.reg.Templates(ctx, "HK-0001")
	if err != nil || len(ts) != 2 || ts[0].Operator != "otto" || ts[0].FaceBox.W < 80 {
		t.Fatalf("templates %+v %v", ts, err)
	}

	// Only an admin deletes; afterwards nothing of the face remains.
	if err := s.reg.Delete(ctx, officer, "HK-0001", "left the programme"); !errors.Is(err, enroll.ErrForbidden) {
		t.Fatalf("officer delete: %v", err)
	}
	var id int64
	if err := s.pool.QueryRow(ctx, `SELECT id FROM people WHERE external_id = 'HK-0001'`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if err := s.reg.Delete(ctx, admin, "HK-0001", "left the programme"); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"people WHERE id = $1", "face_templates WHERE person_id = $1", "photos WHERE person_id = $1",
		"template_history WHERE person_id = $1", "person_gates WHERE person_id = $1", "enrolments WHERE person_id = $1"} {
		if n := s.count(t, `SELECT count(*) FROM `+table, id); n != 0 {
			t.Errorf("after delete: %d rows in %s", n, table)
		}
	}
	if _, err := s.reg.Get(ctx, "HK-0001"); !errors.Is(err, enroll.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	log, err := s.reg.AuditLog(ctx, enroll.AuditQuery{Subject: "HK-0001"})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range log {
		actions = append(actions, e.Action)
		if strings.Contains(string(e.Detail), "embedding") || strings.Count(string(e.Detail), ",") > 40 {
			t.Errorf("audit entry %s holds more than it should: %s", e.Action, e.Detail)
		}
	}
	want := "person.deleted person.reinstated person.revoked person.updated templates.added templates.added person.created"
	if strings.Join(actions, " ") != want {
		t.Fatalf("audit actions %q, want %q", strings.Join(actions, " "), want)
	}
	if log[0].Actor != "ada" || log[0].RemoteAddr != "192.0.2.1" || !strings.Contains(string(log[0].Detail), "left the programme") {
		t.Fatalf("delete entry %+v", log[0])
	}

	// The audit is append-only even for the table's owner.
	if _, err := s.pool.Exec(ctx, `UPDATE enrolment_audit SET actor = 'mallory'`); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("update audit: %v", err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM enrolment_audit`); err == nil {
		t.Fatal("delete from audit succeeded")
	}
}

func TestRegistryIdentityChecks(t *testing.T) {
	ctx := context.Background()
	s := newRegistry(t, nil)
	powell := s.goodPhotos(t, "Colin_Powell", 2)
	bush := s.goodPhotos(t, "George_W_Bush", 1)
	if _, err := s.reg.Create(ctx, officer, enroll.PersonInput{ExternalID: "P1", Name: "Colin Powell", HomePark: "hk"}, powell[:1], enroll.PhotoOptions{}); err != nil {
		t.Fatal(err)
	}
	// The same face under a second id is refused, naming the first.
	in := enroll.PersonInput{ExternalID: "P2", Name: "C. Powell", HomePark: "sz"}
	_, err := s.reg.Create(ctx, officer, in, powell[1:2], enroll.PhotoOptions{})
	var pe *enroll.PhotosError
	if !errors.Is(err, enroll.ErrDuplicateIdentity) || !errors.As(err, &pe) || pe.Photos[0].Duplicate == nil || pe.Photos[0].Duplicate.ExternalID != "P1" {
		t.Fatalf("duplicate: %v", err)
	}
	t.Logf("duplicate found at distance %.3f: %v", pe.Photos[0].Duplicate.Distance, err)
	if n := s.count(t, `SELECT count(*) FROM people`); n != 1 {
		t.Fatalf("%d people after a refused duplicate", n)
	}
	// An officer cannot override; an admin can, with a reason, audited.
	if _, err := s.reg.Create(ctx, officer, in, powell[1:2], enroll.PhotoOptions{OverrideDuplicate: "twin brother, verified"}); !errors.Is(err, enroll.ErrForbidden) {
		t.Fatalf("officer override: %v", err)
	}
	res, err := s.reg.Create(ctx, admin, in, powell[1:2], enroll.PhotoOptions{OverrideDuplicate: "twin brother, verified by passport"})
	if err != nil || res.Added != 1 {
		t.Fatalf("admin override: %+v %v", res, err)
	}
	log, err := s.reg.AuditLog(ctx, enroll.AuditQuery{Subject: "P2", Action: "identity_check.overridden"})
	if err != nil || len(log) != 1 || !strings.Contains(string(log[0].Detail), "passport") {
		t.Fatalf("override audit %+v %v", log, err)
	}

	// A different face cannot join Powell's registration.
	_, err = s.reg.AddPhotos(ctx, officer, "P1", bush, enroll.PhotoOptions{})
	if !errors.As(err, &pe) || pe.Photos[0].Reasons[0].Code != enroll.ReasonNotSamePerson {
		t.Fatalf("not same person: %v", err)
	}
	t.Logf("not the same person: %v", err)

	// Replacing keeps history but not the old embedding.
	res, err = s.reg.AddPhotos(ctx, admin, "P1", bush, enroll.PhotoOptions{Replace: true})
	if err != nil || res.Replaced != 1 || res.Added != 1 {
		t.Fatalf("replace: %+v %v", res, err)
	}
	if n := s.count(t, `SELECT count(*) FROM template_history h JOIN people p ON p.id = h.person_id WHERE p.external_id = 'P1' AND event = 'replaced'`); n != 1 {
		t.Fatalf("%d replaced history rows", n)
	}
}

func TestRegistryRejectsAndStoresNothing(t *testing.T) {
	ctx := context.Background()
	s := newRegistry(t, nil)
	cases := map[string]enroll.Photo{
		"no_face":        {Name: "text.jpg", Data: []byte("this is not an image at all, just text")},
		"multiple_faces": photo(t, "media/two_people.jpg"),
	}
	for want, p := range cases {
		rep := s.reg.CheckPhoto(ctx, p)
		_, err := s.reg.Create(ctx, officer, enroll.PersonInput{ExternalID: "R1", Name: "R", HomePark: "hk"}, []enroll.Photo{p}, enroll.PhotoOptions{})
		if !errors.Is(err, enroll.ErrRejected) || rep.Accepted {
			t.Fatalf("%s: %v", want, err)
		}
		var codes []string
		for _, r := range rep.Reasons {
			codes = append(codes, r.Code)
		}
		t.Logf("%s: reasons %v", p.Name, codes)
		if want == "multiple_faces" && codes[0] != enroll.ReasonMultipleFaces {
			t.Fatalf("%s: reasons %v", p.Name, codes)
		}
		if want == "no_face" && codes[0] != enroll.ReasonDecodeFailed && codes[0] != enroll.ReasonUnsupportedFormat {
			t.Fatalf("%s: reasons %v", p.Name, codes)
		}
	}
	if n := s.count(t, `SELECT count(*) FROM people`) + s.count(t, `SELECT count(*) FROM face_templates`); n != 0 {
		t.Fatalf("%d rows stored by rejected requests", n)
	}
	if n := s.count(t, `SELECT count(*) FROM enrolment_audit`); n != 0 {
		t.Fatalf("%d audit rows for rejected requests", n)
	}
}

func TestPhotoVaultSealsAndExpires(t *testing.T) {
	ctx := context.Background()
	keyFile := filepath.Join(t.TempDir(), "photo.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("ab", 32)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := enroll.NewPhotoVault(keyFile, time.Hour); !errors.Is(err, enroll.ErrVaultKey) {
		t.Fatalf("world-readable key: %v", err)
	}
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	vault, err := enroll.NewPhotoVault(keyFile, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s := newRegistry(t, vault)
	photos := s.goodPhotos(t, "Tony_Blair", 1)
	res, err := s.reg.Create(ctx, officer, enroll.PersonInput{ExternalID: "V1", Name: "Tony Blair", HomePark: "sz"}, photos, enroll.PhotoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := s.reg.Templates(ctx, "V1")
	if err != nil || len(ts) != 1 || !ts[0].PhotoKept {
		t.Fatalf("templates %+v %v (added %d)", ts, err, res.Added)
	}
	// Sealed at rest: the JPEG's bytes are not in the row.
	var sealed []byte
	if err := s.pool.QueryRow(ctx, `SELECT sealed FROM photos`).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), string(photos[0].Data[:64])) || string(sealed[:3]) == "\xff\xd8\xff" {
		t.Fatal("photo stored in clear")
	}
	got, err := vault.Open(ctx, s.pool, "V1", ts[0].ID)
	if err != nil || string(got) != string(photos[0].Data) {
		t.Fatalf("open: %d bytes, %v", len(got), err)
	}
	// Past retention it is purged.
	if _, err := s.pool.Exec(ctx, `UPDATE photos SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	if n, err := enroll.PurgeExpired(ctx, s.pool); err != nil || n != 1 {
		t.Fatalf("purge: %d %v", n, err)
	}
}

func TestAccountsAndTokens(t *testing.T) {
	ctx := context.Background()
	g, _, err := gallery.Open(ctx, testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	acc := enroll.NewAccounts(g.Pool())
	cli := enroll.Actor{Name: "root", Kind: "cli"}
	if _, err := acc.AddUser(ctx, cli, "ada", "correct horse battery", enroll.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := acc.AddUser(ctx, officer, "eve", "correct horse battery", enroll.RoleOfficer); !errors.Is(err, enroll.ErrForbidden) {
		t.Fatalf("officer adds a user: %v", err)
	}
	if _, err := acc.AddUser(ctx, cli, "bob", "short", enroll.RoleOfficer); !errors.Is(err, enroll.ErrInvalid) {
		t.Fatalf("short password: %v", err)
	}
	if _, err := acc.AddUser(ctx, cli, "ada", "correct horse battery", enroll.RoleOfficer); !errors.Is(err, enroll.ErrConflict) {
		t.Fatalf("same username: %v", err)
	}
	var hash string
	if err := g.Pool().QueryRow(ctx, `SELECT password_hash FROM accounts WHERE username = 'ada'`).Scan(&hash); err != nil || !strings.HasPrefix(hash, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("stored hash %q %v", hash, err)
	}
	if a, err := acc.Authenticate(ctx, "ada", "correct horse battery"); err != nil || a.Role != enroll.RoleAdmin {
		t.Fatalf("login: %+v %v", a, err)
	}
	for _, c := range [][2]string{{"ada", "wrong horse battery"}, {"nobody", "correct horse battery"}} {
		if _, err := acc.Authenticate(ctx, c[0], c[1]); !errors.Is(err, enroll.ErrBadCredentials) {
			t.Fatalf("%v: %v", c, err)
		}
	}
	adminActor := enroll.Actor{Name: "ada", Kind: "account", Role: enroll.RoleAdmin}
	secret, tok, err := acc.CreateToken(ctx, adminActor, "bulk-loader", enroll.RoleOfficer)
	if err != nil || !strings.HasPrefix(secret, enroll.TokenPrefix) {
		t.Fatal(err)
	}
	var stored []byte
	if err := g.Pool().QueryRow(ctx, `SELECT secret_sha256 FROM api_tokens`).Scan(&stored); err != nil || strings.Contains(string(stored), secret) {
		t.Fatal("token secret stored in clear")
	}
	if got, err := acc.LookupToken(ctx, secret); err != nil || got.Name != "bulk-loader" || got.LastUsedAt == nil {
		t.Fatalf("lookup: %+v %v", got, err)
	}
	if err := acc.RevokeToken(ctx, adminActor, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := acc.LookupToken(ctx, secret); !errors.Is(err, enroll.ErrBadCredentials) {
		t.Fatalf("revoked token: %v", err)
	}
	if err := acc.DisableUser(ctx, adminActor, "ada"); err != nil {
		t.Fatal(err)
	}
	if _, err := acc.Authenticate(ctx, "ada", "correct horse battery"); !errors.Is(err, enroll.ErrBadCredentials) {
		t.Fatalf("disabled account: %v", err)
	}
}
