package server

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/internal/testenv"
)

// annotatedFrame builds what the pipeline publishes: a 640x480 camera frame
// holding a real LFW photo, with the face box and label drawn by OpenCV,
// encoded as JPEG.
func annotatedFrame(t *testing.T, photo, label string, boxColor color.RGBA) []byte {
	t.Helper()
	face := gocv.IMRead(photo, gocv.IMReadColor)
	if face.Empty() {
		t.Fatalf("OpenCV cannot read %s", photo)
	}
	defer face.Close()
	canvas := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(45, 40, 38, 0), 480, 640, gocv.MatTypeCV8UC3)
	defer canvas.Close()
	at := image.Pt((640-face.Cols())/2, (480-face.Rows())/2+20)
	roi := canvas.Region(image.Rectangle{Min: at, Max: at.Add(image.Pt(face.Cols(), face.Rows()))})
	face.CopyTo(&roi)
	roi.Close()
	// LFW deep-funneled crops put the face in the middle of the 250x250 image.
	box := image.Rect(at.X+70, at.Y+60, at.X+180, at.Y+190)
	gocv.Rectangle(&canvas, box, boxColor, 3)
	gocv.PutText(&canvas, label, image.Pt(box.Min.X, box.Min.Y-10), gocv.FontHersheySimplex, 0.6, boxColor, 2)
	buf, err := gocv.IMEncode(gocv.JPEGFileExt, canvas)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	return bytes.Clone(buf.GetBytes()) // GetBytes is C memory that Close frees
}

func TestLivePageInChromium(t *testing.T) {
	browser := testenv.Chromium(t)
	lfw := filepath.Join(testenv.SharedDir(t), "datasets", "lfw", "images")
	green, red := color.RGBA{G: 200, A: 255}, color.RGBA{R: 220, G: 40, B: 40, A: 255}
	frameA := annotatedFrame(t, filepath.Join(lfw, "George_W_Bush", "George_W_Bush_0001.jpg"), "#17 George W Bush 0.38", green)
	frameB := annotatedFrame(t, filepath.Join(lfw, "Aaron_Eckhart", "Aaron_Eckhart_0001.jpg"), "#18 unknown 0.73", red)

	n := startNode(t, Config{}, Deps{})

	// The fake pipeline: frames at 10 fps per camera, as the real one
	// publishes them after drawing.
	pipeCtx, stopPipe := context.WithCancel(context.Background())
	var pipeDone sync.WaitGroup
	pipeDone.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			n.frames.PublishFrame("cam-a", frameA, time.Now())
			n.frames.PublishFrame("cam-b", frameB, time.Now())
			select {
			case <-pipeCtx.Done():
				return
			case <-tick.C:
			}
		}
	})
	defer pipeDone.Wait()
	defer stopPipe()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1366, 768),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer cancelTab()
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelTimeout()

	// Every console error, uncaught exception and browser-log error (a
	// CSP violation, a failed load) fails the test.
	var (
		consoleMu sync.Mutex
		problems  []string
	)
	consoleCtx, stopConsole := context.WithCancel(ctx)
	messages := chromedp.Console(consoleCtx)
	var consoleDone sync.WaitGroup
	consoleDone.Go(func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				consoleMu.Lock()
				problems = append(problems, fmt.Sprintf("%s %s:%d %s", m.Type, m.URL, m.Line+1, m.Text))
				consoleMu.Unlock()
			}
		}
	})

	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return s
	}
	waitJS := func(what, js string) string {
		t.Helper()
		var got string
		waitFor(t, what, func() bool { got = eval(js); return got != "" })
		return got
	}

	// Anonymous: /live sends the browser to the login page.
	do("open /live", chromedp.EmulateViewport(1366, 768), chromedp.Navigate(n.base+"/live"), chromedp.WaitVisible(chromedp.ID("token")))
	if loc := eval(`location.pathname + location.search`); loc != "/login?next=%2Flive" {
		t.Fatalf("anonymous /live landed on %q, want the login page", loc)
	}

	// A wrong token is refused on the page.
	do("wrong login", chromedp.SendKeys(chromedp.ID("token"), "not-the-token"), chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.ID("login-error")))
	if msg := eval(`document.getElementById('login-error').textContent`); !strings.Contains(msg, "not valid") {
		t.Errorf("login error says %q", msg)
	}
	consoleMu.Lock()
	problems = nil // the 401 of the refused login is logged by the browser, and expected
	consoleMu.Unlock()

	do("log in", chromedp.SendKeys(chromedp.ID("token"), operatorSecret), chromedp.Click(chromedp.ID("login-submit")),
		chromedp.WaitVisible(chromedp.CSS(`.tile[data-camera="cam-a"]`)))
	if loc := eval(`location.pathname`); loc != "/live" {
		t.Fatalf("after login the browser is on %q", loc)
	}
	if user := eval(`document.querySelector('.user-name').textContent`); user != "desk-1" {
		t.Errorf("page shows user %q", user)
	}

	// Both camera tiles show a decoded frame.
	for _, cam := range []string{"cam-a", "cam-b"} {
		w := waitJS(cam+" frame", fmt.Sprintf(`(() => { const i = document.querySelector('.tile[data-camera=%q] img'); return i && i.complete && i.naturalWidth > 0 ? i.naturalWidth + 'x' + i.naturalHeight : '' })()`, cam))
		if w != "640x480" {
			t.Errorf("%s frame is %s, want 640x480", cam, w)
		}
	}
	if age := waitJS("frame age", `(() => { const a = document.querySelector('.tile[data-camera="cam-a"] .age').textContent; return a.endsWith(' s ago') ? a : '' })()`); age == "" {
		t.Error("cam-a shows no frame age")
	}
	waitFor(t, "the page's event stream", func() bool { return n.events.Subscribers() >= 1 })
	waitJS("stream status", `document.getElementById('conn').textContent === 'live' ? 'y' : ''`)

	n.events.Send(openEvent("north-1/cam-a/17/1"))
	row := waitJS("the OPEN row", `(() => { const r = document.querySelector('#decision-list li[data-decision="open"]'); return r ? r.innerText : '' })()`)
	for _, want := range []string{"OPEN", "Matched", "George W Bush", "E123", "cam-a", "d 0.382", "margin 0.214", "frames 4/9", "96 ms"} {
		if !strings.Contains(row, want) {
			t.Errorf("OPEN row lacks %q:\n%s", want, row)
		}
	}
	n.events.Send(denyEvent("north-1/cam-b/18/1"))
	row = waitJS("the DENY row", `(() => { const r = document.querySelector('#decision-list li[data-decision="deny"]'); return r ? r.innerText : '' })()`)
	for _, want := range []string{"DENY", "Unknown face", "no registered match", "cam-b", "d 0.731", "frames 3/5", "88 ms", "too far"} {
		if !strings.Contains(row, want) {
			t.Errorf("DENY row lacks %q:\n%s", want, row)
		}
	}
	if first := eval(`document.querySelector('#decision-list li').dataset.decision`); first != "deny" {
		t.Errorf("newest row is %q, want the deny on top", first)
	}
	if colours := eval(`[...document.querySelectorAll('#decision-list .outcome')].map(e => getComputedStyle(e).backgroundColor).join(' | ')`); colours != "rgb(214, 69, 69) | rgb(31, 157, 85)" {
		t.Errorf("badge colours %q, want red DENY over green OPEN", colours)
	}
	if tally := eval(`document.getElementById('count-open').textContent + '/' + document.getElementById('count-deny').textContent`); tally != "1/1" {
		t.Errorf("tally %s, want 1/1", tally)
	}
	// Names are text, not markup.
	xss := openEvent("north-1/cam-a/19/1")
	xss.Person.Name = `<img src=x onerror="document.body.dataset.pwned=1">Eve`
	n.events.Send(xss)
	waitJS("the third row", `document.querySelectorAll('#decision-list li').length === 3 ? 'y' : ''`)
	if eval(`document.querySelectorAll('#decision-list img').length + '/' + (document.body.dataset.pwned || '')`) != "0/" {
		t.Error("a name was rendered as HTML")
	}

	// 1366x768: nothing overflows sideways, the decision column is on screen.
	layout := eval(`(() => { const d = document.querySelector('.decisions').getBoundingClientRect(); const c = document.querySelector('.tile[data-camera="cam-b"]').getBoundingClientRect();
		return [innerWidth, innerHeight, document.documentElement.scrollWidth, Math.round(d.left), Math.round(d.right), Math.round(c.bottom)].join(' ') })()`)
	var vw, vh, sw, dl, dr, cb int
	if _, err := fmt.Sscan(layout, &vw, &vh, &sw, &dl, &dr, &cb); err != nil {
		t.Fatal(err)
	}
	if vw != 1366 || vh != 768 || sw > vw || dr > vw || dl < vw/2 || cb > vh {
		t.Errorf("layout at 1366x768: viewport %dx%d, scrollWidth %d, decisions %d..%d, cam-b tile bottom %d", vw, vh, sw, dl, dr, cb)
	}

	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(testenv.Artifacts(t), "live-1366x768.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(shot))
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1366 || b.Dy() != 768 {
		t.Errorf("screenshot is %v, want 1366x768", b.Size())
	}
	// The OPEN and DENY badges are on screen in their colours.
	openPx, denyPx := countColour(img, color.RGBA{31, 157, 85, 255}), countColour(img, color.RGBA{214, 69, 69, 255})
	if openPx < 200 || denyPx < 200 {
		t.Errorf("screenshot has %d OPEN-green and %d DENY-red pixels; the badges are not visible", openPx, denyPx)
	}

	// Until now the browser must have logged no error at all.
	consoleMu.Lock()
	for _, p := range problems {
		t.Errorf("browser console: %s", p)
	}
	problems = nil
	consoleMu.Unlock()

	// Logging out ends the session.
	do("log out", chromedp.Click(chromedp.CSS(`.user button`)), chromedp.WaitVisible(chromedp.ID("token")))
	status := eval(`fetch('/live/cameras').then(r => String(r.status))`)
	if status != "401" {
		t.Errorf("after logout /live/cameras answers %s, want 401", status)
	}

	stopConsole()
	consoleDone.Wait()
	consoleMu.Lock()
	defer consoleMu.Unlock()
	// After logout, the page's last polls and the check above are refused
	// with 401, as they must be; nothing else may go wrong.
	for _, p := range problems {
		if !strings.Contains(p, "status of 401") {
			t.Errorf("browser console after logout: %s", p)
		}
	}
}

func countColour(img image.Image, want color.RGBA) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r>>8, want.R) && near(g>>8, want.G) && near(bl>>8, want.B) {
				n++
			}
		}
	}
	return n
}

func near(v uint32, w uint8) bool { d := int(v) - int(w); return d >= -6 && d <= 6 }
