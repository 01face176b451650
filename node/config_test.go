package node

import (
	"os"

	"path/filepath"
	"strings"
	"testing"

	"github.com/loopgate/loopgate/engine/quality"
)

func TestExampleConfigLoads(t *testing.T) {
	t.Setenv("LOOPGATE_DATABASE_URL", "postgres://example/db")
	t.Setenv("LOOPGATE_HTTP_ADDR", "127.0.0.1:0")
	cfg, err := Load(filepath.Join("..", "deploy", "gate-node.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Gate != "bridge1-north" || len(cfg.Cameras) != 1 || cfg.Database.URL != "postgres://example/db" || cfg.HTTP.Addr != "127.0.0.1:0" {
		t.Fatalf("loaded %+v", cfg)
	}
	if got := cfg.Scope(); strings.Join(got, ",") != "bridge1-north,bridge1" {
		t.Fatalf("scope %v", got)
	}
	if cfg.Fusion != DefaultFusion {
		t.Fatalf("fusion %+v, the example must show the defaults %+v", cfg.Fusion, DefaultFusion)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	os.Unsetenv("LOOPGATE_FUSION_THRESHOLD")
	base := "gate: g1\ndatabase: {url: postgres://x/y}\ncameras: [{name: c1, uri: clip.avi}]\n"
	cases := []struct{ yaml, want string }{
		{base + "colour: blue\n", "field colour not found"},
		{base + "fusion: {threshold: nope}\n", "cannot unmarshal"},
		{base + "fusion: {threshold: 1.5}\n", "fusion.threshold"},
		{base + "fusion: {min_frames: 0}\n", "fusion.min_frames"},
		{base + "fusion: {margin: 0.9}\n", "fusion.margin"},
		{base + "tracking: {max_gap: 10s}\n", "tracking"},
		{base + "detector: {input_width: 50}\n", "detector.input_width"},
		{"gate: g1\ndatabase: {url: postgres://x/y}\n", "cameras"},
		{"gate: 'bad gate'\ndatabase: {url: postgres://x/y}\ncameras: [{name: c1, uri: a}]\n", "gate"},
		{"gate: g1\ndatabase: {url: postgres://x/y}\ncameras: [{name: c1, uri: a}, {name: c1, uri: b}]\n", "cameras[1].name"},
		{base + "claims: {enabled: true}\n", "claims.enabled needs http.addr"},
		{base + "http: {tokens: [{name: a, sha256: abc, roles: [operator]}]}\n", "http.tokens[0]"},
		{base + "http: {tokens: [{name: a, sha256: " + strings.Repeat("a", 64) + ", roles: [root]}]}\n", "unknown role"},
		{base + "sinks: {webhook: {url: ftp://x}}\n", "sinks.webhook.url"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want an error naming %q", c.yaml, err, c.want)
		}
	}
	// A partial quality section overrides only what it names.
	cfg, err := Parse([]byte(base + "quality: {min_inter_eye_px: 30}\n"))
	if err != nil || cfg.Quality.MinInterEyePx != 30 || cfg.Quality.MinSharpness != quality.Gate.MinSharpness || cfg.Quality.MaxAbsYaw != quality.Gate.MaxAbsYaw {
		t.Fatalf("partial quality override: %+v %v", cfg.Quality, err)
	}
	if quality.Gate.MinInterEyePx == 30 {
		t.Fatal("the override changed the shared Gate profile")
	}
	t.Setenv("LOOPGATE_FUSION_THRESHOLD", "0.41")
	cfg, err = Parse([]byte(base))
	if err != nil || cfg.Fusion.Threshold != 0.41 {
		t.Fatalf("env override: %v %v", cfg.Fusion.Threshold, err)
	}
}
