package node

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/loopgate/loopgate/camera/synth"
	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/internal/testenv"
	"github.com/loopgate/loopgate/internal/walkfixture"
	"github.com/loopgate/loopgate/server"
)

// TestLivePageOnRealPipeline: the gate node runs on a SYNTHETIC clip (one
// enrolled walker, then a stranger) with its HTTP side; headless Debian
// Chromium logs in to /live and must show the camera's annotated frame and
// the real decisions as they happen: OPEN with the walker's name, then DENY
// with the reason. A screenshot is saved (testenv.Artifacts) and checked to
// be a 1366x768 PNG.
func TestLivePageOnRealPipeline(t *testing.T) {
	browser := testenv.Chromium(t)
	clip := synth.DefaultConfig()
	clip.Seed = 13
	clip.GapSeconds = 2 // time for the browser to log in before the first walker
	walkers := vettedWalkers(t, 1, 1, clip.Seed)
	fx := walkfixture.New(t, clip, walkers, 0)
	enrolledName := strings.ReplaceAll(fx.Manifest.Walkers[0].Name, "_", " ")
	if !fx.Manifest.Walkers[0].Enrolled {
		enrolledName = strings.ReplaceAll(fx.Manifest.Walkers[1].Name, "_", " ")
	}

	cfg := testConfig(t, fx, false)
	secret, hash, err := server.NewTokenSecret()
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.HTTP.Tokens = []TokenConfig{{Name: "desk", SHA256: hash, Roles: []string{"operator"}}}
	cfg.Live.FPS = 8
	col := &collector{}
	runCtx, cancelRun := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancelRun()
	n, err := New(runCtx, cfg, Options{Sinks: []decision.Sink{col}, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	base := "http://" + n.Addr()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1366, 768))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	defer cancelTab()
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelTimeout()
	// The HTTP side serves once the node runs; the page replays recent
	// decisions on connect, so a slow browser start loses nothing.
	done := make(chan error, 1)
	go func() { done <- n.Run(runCtx) }()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1366, 768), chromedp.Navigate(base+"/live"), chromedp.WaitVisible(chromedp.ID("token"))); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("token"), secret), chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.CSS(`.tile[data-camera="lane-a"]`))); err != nil {
		t.Fatal(err)
	}
	eval := func(js string) string {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return s
	}
	waitJS := func(what, js string) string {
		t.Helper()
		for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if got := eval(js); got != "" {
				return got
			}
		}
		t.Fatalf("timed out waiting for %s; decisions so far %+v", what, col.all())
		return ""
	}
	frame := waitJS("the camera frame", `(() => { const i = document.querySelector('.tile[data-camera="lane-a"] img'); return i && i.complete && i.naturalWidth > 0 ? i.naturalWidth + 'x' + i.naturalHeight : '' })()`)
	if frame != "640x480" {
		t.Errorf("camera frame %s, want 640x480", frame)
	}
	open := waitJS("the OPEN row", `(() => { const r = document.querySelector('#decision-list li[data-decision="open"]'); return r ? r.innerText : '' })()`)
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	deny := waitJS("the DENY row", `(() => { const r = document.querySelector('#decision-list li[data-decision="deny"]'); return r ? r.innerText : '' })()`)
	t.Logf("page shows OPEN row:\n%s\nDENY row:\n%s", open, deny)
	if !strings.Contains(open, "OPEN") || !strings.Contains(open, enrolledName) || !strings.Contains(open, "lane-a") {
		t.Errorf("OPEN row lacks OPEN, %q or the camera:\n%s", enrolledName, open)
	}
	if !strings.Contains(deny, "DENY") || !strings.Contains(strings.ToLower(deny), "unknown face") {
		t.Errorf("DENY row lacks DENY or the reason:\n%s", deny)
	}
	path := filepath.Join(testenv.Artifacts(t), "live-real-pipeline-1366x768.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil || img.Bounds().Dx() != 1366 || img.Bounds().Dy() != 768 {
		t.Fatalf("screenshot %s: %v %v", path, err, fmt.Sprint(img.Bounds()))
	}
	t.Logf("screenshot: %s", path)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
