package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/engine/still"
	"github.com/loopgate/loopgate/enroll"
	"github.com/loopgate/loopgate/internal/testenv"
)

// The browser tests drive the enrolment page in Debian's chromium,
// headless, against the real API server (real OpenCV, go-face, PostgreSQL).
// Chromium's fake webcam plays a .y4m clip made at test time: a real LFW
// face, or a drawn scene with no face in it.

const (
	browserOfficer  = "officer1"
	browserPassword = "correct horse battery"
	// browserFacePhoto passes the enrolment profile once enlarged into the
	// fake webcam's frame (yaw 5°, 81 px between the eyes, sharpness 156 in
	// a dry run); Colin_Powell_0001 does not: its head is turned 23°.
	browserFacePhoto = "datasets/lfw/images/Colin_Powell/Colin_Powell_0002.jpg"
	// browserSmallPhoto, uploaded as it is, has 37 px between the eyes.
	browserSmallPhoto = "datasets/lfw/images/Colin_Powell/Colin_Powell_0001.jpg"
	webcamW, webcamH  = 640, 480
)

// browserLog sends the server's log lines to the test log.
type browserLog struct{ t *testing.T }

func (w browserLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// browserStack is the enrolment service on a free port with an officer
// account.
type browserStack struct {
	base string
	reg  *enroll.Registry
}

func startBrowserStack(t *testing.T) *browserStack {
	t.Helper()
	ctx := context.Background()
	models := testenv.ModelDir(t)
	rec, err := facerec.New(facerec.Config{ModelDir: models})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() })
	g, _, err := gallery.Open(ctx, testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	stills, err := still.New(still.Config{ModelDir: models}, rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stills.Close() })
	logger := slog.New(slog.NewTextHandler(browserLog{t}, nil))
	reg, err := enroll.NewRegistry(enroll.RegistryConfig{Pool: g.Pool(), Checker: &enroll.Service{Stills: stills, Model: rec.ModelTag()}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	acc := enroll.NewAccounts(g.Pool())
	if _, err := acc.AddUser(ctx, enroll.Actor{Kind: "cli", Name: "test", Role: enroll.RoleAdmin}, browserOfficer, browserPassword, enroll.RoleOfficer); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Addr: "127.0.0.1:0"}, Deps{Registry: reg, Accounts: acc, DB: g.Pool(), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(runCtx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return &browserStack{base: "http://" + ln.Addr().String(), reg: reg}
}

// people counts the registrations and their templates.
func (s *browserStack) people(t *testing.T) (people, templates int) {
	t.Helper()
	after := ""
	for {
		page, err := s.reg.List(context.Background(), enroll.ListQuery{Limit: 200, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page.People {
			people++
			templates += p.Templates
		}
		if page.Next == "" {
			return people, templates
		}
		after = page.Next
	}
}

// webcamFaceFrame is the fake webcam's picture: the LFW photo enlarged to
// 480x480 (LFW's 250 px crops put about 44 px between the eyes; the
// enrolment profile wants 40 and the recogniser's box 80 px a side) on a
// grey 640x480 frame.
func webcamFaceFrame(t *testing.T) gocv.Mat {
	t.Helper()
	src, err := gocv.IMDecode(testenv.SharedFile(t, browserFacePhoto), gocv.IMReadColor)
	if err != nil || src.Empty() {
		t.Fatalf("decode %s: %v", browserFacePhoto, err)
	}
	defer src.Close()
	big := gocv.NewMat()
	defer big.Close()
	gocv.Resize(src, &big, image.Pt(webcamH, webcamH), 0, 0, gocv.InterpolationCubic)
	frame := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(120, 118, 112, 0), webcamH, webcamW, gocv.MatTypeCV8UC3)
	at := image.Pt((webcamW-webcamH)/2, 0)
	roi := frame.Region(image.Rectangle{Min: at, Max: at.Add(image.Pt(webcamH, webcamH))})
	big.CopyTo(&roi)
	roi.Close()
	return frame
}

// webcamSceneFrame is a drawn footbridge at dusk: sky, hills, a deck on
// pillars, no face. (A flat single-colour frame is not used: YuNet finds a
// "face" in one.)
func webcamSceneFrame() gocv.Mat {
	frame := gocv.NewMatWithSize(webcamH, webcamW, gocv.MatTypeCV8UC3)
	for y := range webcamH {
		gocv.Line(&frame, image.Pt(0, y), image.Pt(webcamW-1, y), color.RGBA{R: uint8(150 - y/6), G: uint8(200 - y/5), B: uint8(230 - y/4)}, 1)
	}
	hills := gocv.NewPointsVectorFromPoints([][]image.Point{{{0, 330}, {160, 250}, {300, 310}, {470, 230}, {640, 320}, {640, 480}, {0, 480}}})
	defer hills.Close()
	gocv.FillPoly(&frame, hills, color.RGBA{R: 70, G: 110, B: 60})
	gocv.Rectangle(&frame, image.Rect(0, 360, webcamW, 380), color.RGBA{R: 95, G: 90, B: 90}, -1)
	for x := 40; x < webcamW; x += 120 {
		gocv.Rectangle(&frame, image.Rect(x, 380, x+14, webcamH), color.RGBA{R: 85, G: 80, B: 80}, -1)
	}
	return frame
}

// writeY4M writes frame (BGR) as a YUV4MPEG2 clip chromium's fake webcam
// plays in a loop: a stream header, then "FRAME" and the I420 planes (Y,
// then U and V at half resolution) for each frame.
func writeY4M(t *testing.T, path string, frame gocv.Mat, frames int) {
	t.Helper()
	defer frame.Close()
	yuv := gocv.NewMat()
	defer yuv.Close()
	gocv.CvtColor(frame, &yuv, gocv.ColorBGRToYUVI420)
	w, h := frame.Cols(), frame.Rows()
	planes := yuv.ToBytes()
	if len(planes) != w*h*3/2 {
		t.Fatalf("I420 frame is %d bytes, want %d", len(planes), w*h*3/2)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	fmt.Fprintf(bw, "YUV4MPEG2 W%d H%d F30:1 Ip A1:1 C420jpeg\n", w, h)
	for range frames {
		bw.WriteString("FRAME\n")
		bw.Write(planes)
	}
	if err := errors.Join(bw.Flush(), f.Close()); err != nil {
		t.Fatal(err)
	}
}

// browserSession is one headless chromium whose webcam plays a clip.
type browserSession struct {
	t   *testing.T
	ctx context.Context
	dir string

	mu       sync.Mutex
	problems []string
}

func openBrowser(t *testing.T, webcamClip, artifacts string) *browserSession {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(testenv.Chromium(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// The fake webcam, and no permission prompt for it.
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-file-for-fake-video-capture", webcamClip),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1366, 768),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelTab)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancelTimeout)
	b := &browserSession{t: t, ctx: ctx, dir: artifacts}

	// Every console error, uncaught exception and browser-log error (a CSP
	// violation, a failed load) is a problem.
	// Console starts the browser; it must run before any other action, not
	// in the goroutine, or two goroutines start the browser at once.
	consoleCtx, stopConsole := context.WithCancel(ctx)
	messages := chromedp.Console(consoleCtx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.problems = append(b.problems, fmt.Sprintf("%s %s:%d %s", m.Type, m.URL, m.Line+1, m.Text))
				b.mu.Unlock()
			}
		}
	})
	t.Cleanup(func() { stopConsole(); wg.Wait() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1366, 768)); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *browserSession) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func (b *browserSession) eval(js string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return s
}

// waitJS polls js until it returns a non-empty string.
func (b *browserSession) waitJS(what, js string) string {
	b.t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got := b.eval(js); got != "" {
			return got
		}
	}
	b.t.Fatalf("timed out waiting for %s", what)
	return ""
}

// takeProblems returns the console problems so far and forgets them.
func (b *browserSession) takeProblems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.problems
	b.problems = nil
	return p
}

// noHorizontalScroll checks the page fits a 1366 px wide screen.
func (b *browserSession) noHorizontalScroll(where string) {
	b.t.Helper()
	var vw, sw int
	if _, err := fmt.Sscan(b.eval(`innerWidth + ' ' + document.documentElement.scrollWidth`), &vw, &sw); err != nil {
		b.t.Fatal(err)
	}
	if vw != 1366 || sw > vw {
		b.t.Errorf("%s: viewport %d px wide, page %d px wide: it scrolls sideways at 1366x768", where, vw, sw)
	}
}

// screenshot saves the viewport as name and returns it decoded.
func (b *browserSession) screenshot(name string) image.Image {
	b.t.Helper()
	shot, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatal(err)
	}
	path := filepath.Join(b.dir, name)
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s (%d bytes)", path, len(shot))
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		b.t.Fatalf("screenshot %s is not a PNG: %v", name, err)
	}
	if s := img.Bounds().Size(); s.X != 1366 || s.Y != 768 {
		b.t.Errorf("screenshot %s is %v, want 1366x768", name, s)
	}
	return img
}

// logIn opens the app, which sends an anonymous browser to /login, and
// logs in as the officer.
func (b *browserSession) logIn(base string) {
	b.t.Helper()
	b.do("open the app", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("username")))
	if loc := b.eval(`location.pathname`); loc != "/login" {
		b.t.Fatalf("anonymous / landed on %q, want /login", loc)
	}
	b.do("log in", chromedp.SendKeys(chromedp.ID("username"), browserOfficer), chromedp.SendKeys(chromedp.ID("password"), browserPassword),
		chromedp.Click(chromedp.ID("login-submit")), chromedp.WaitVisible(chromedp.ID("person-form")))
	b.waitJS("the session", `document.body.dataset.ready === 'true' ? 'y' : ''`)
	if who := b.eval(`document.getElementById('user-name').textContent + '/' + document.getElementById('user-role').textContent`); who != browserOfficer+"/officer" {
		b.t.Errorf("header shows %q, want %s/officer", who, browserOfficer)
	}
	// Before the login the page and the login form asked for the session
	// and got 401, which the browser logs; they are expected.
	for _, p := range b.takeProblems() {
		if !strings.Contains(p, "status of 401") {
			b.t.Errorf("browser console before login: %s", p)
		}
	}
}

// fillPerson types the person's details into the form.
func (b *browserSession) fillPerson(id, name, org, park, gates, until string) {
	b.t.Helper()
	b.do("fill in the person", chromedp.SendKeys(chromedp.ID("external_id"), id), chromedp.SendKeys(chromedp.ID("name"), name),
		chromedp.SendKeys(chromedp.ID("organisation"), org), chromedp.Click(chromedp.CSS(`input[name=home_park][value=`+park+`]`)),
		chromedp.SendKeys(chromedp.ID("gates"), gates), chromedp.SetValue(chromedp.ID("valid_until"), until))
}

// capture starts the camera if needed, takes a picture and waits for the
// quality report; it returns "accepted" or "rejected".
func (b *browserSession) capture() string {
	b.t.Helper()
	if b.eval(`document.getElementById('capture').disabled ? '' : 'on'`) == "" {
		b.do("start the camera", chromedp.Click(chromedp.ID("camera-start")), chromedp.WaitEnabled(chromedp.ID("capture")))
	}
	if size := b.eval(`(() => { const v = document.getElementById('video'); return v.videoWidth + 'x' + v.videoHeight })()`); size != fmt.Sprintf("%dx%d", webcamW, webcamH) {
		b.t.Errorf("the fake webcam plays %s, want %dx%d", size, webcamW, webcamH)
	}
	b.do("capture", chromedp.Click(chromedp.ID("capture")))
	return b.waitJS("the quality report", `document.body.dataset.lastCheck || ''`)
}

// measure reads one measure shown in the report, by its label (without
// the "(fails)" said to screen readers).
func (b *browserSession) measure(label string) string {
	b.t.Helper()
	return b.eval(fmt.Sprintf(`(() => { const dt = [...document.querySelectorAll('#measures dt')].find(e => e.textContent === %q);
		return dt ? dt.nextElementSibling.firstChild.textContent : '' })()`, label))
}

// overlayBox is the bounding box of the drawn face box on the overlay
// canvas in photo pixels, and its colour's dominant channel ("green" or
// "red"), or "none".
func (b *browserSession) overlayBox() (image.Rectangle, string) {
	b.t.Helper()
	out := b.eval(`(() => { const c = document.getElementById('report-overlay'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
		let x0 = 1e9, y0 = 1e9, x1 = -1, y1 = -1, g = 0, r = 0;
		for (let i = 0; i < d.length; i += 4) { if (d[i + 3] < 128) continue; const p = i / 4, x = p % c.width, y = Math.floor(p / c.width);
			x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y); if (d[i + 1] > d[i]) g++; else r++; }
		return x1 < 0 ? 'none' : [x0, y0, x1 + 1, y1 + 1, g >= r ? 'green' : 'red'].join(' ') })()`)
	if out == "none" {
		return image.Rectangle{}, "none"
	}
	var r image.Rectangle
	var colour string
	if _, err := fmt.Sscan(out, &r.Min.X, &r.Min.Y, &r.Max.X, &r.Max.Y, &colour); err != nil {
		b.t.Fatalf("overlay %q: %v", out, err)
	}
	return r, colour
}

func (b *browserSession) text(id string) string {
	b.t.Helper()
	return b.eval(fmt.Sprintf(`document.getElementById(%q).innerText`, id))
}

// TestBrowserEnrolmentWithFakeWebcam: an officer logs in, captures a real
// face from the fake webcam, sees it accepted with its measures and face
// box, confirms, finds the person in the list and revokes them; then, with
// a webcam that shows no face, the capture is refused with the no_face
// reason and nothing is stored.
func TestBrowserEnrolmentWithFakeWebcam(t *testing.T) {
	testenv.Chromium(t) // before the slow set-up
	stack := startBrowserStack(t)
	artifacts := testenv.Artifacts(t)
	t.Logf("screenshots go to %s", artifacts)
	clips := t.TempDir()
	faceClip, sceneClip := filepath.Join(clips, "face-640x480.y4m"), filepath.Join(clips, "no-face-640x480.y4m")
	writeY4M(t, faceClip, webcamFaceFrame(t), 5)
	writeY4M(t, sceneClip, webcamSceneFrame(), 5)
	ctx := context.Background()

	t.Run("face accepted, enrolled, listed, revoked", func(t *testing.T) {
		b := openBrowser(t, faceClip, artifacts)
		b.logIn(stack.base)
		// The API server mounts the page with the page's own policies.
		policies := b.eval(`fetch('/').then(r => r.headers.get('content-security-policy') + ' | ' + r.headers.get('permissions-policy'))`)
		if !strings.Contains(policies, "media-src 'self' blob: mediastream:") || !strings.Contains(policies, "camera=(self)") {
			t.Errorf("the page is served with %q", policies)
		}
		b.fillPerson("CP-0002", "Colin Powell", "US State Department", "hk", "north-1, south-2", "2027-12-31")

		if got := b.capture(); got != "accepted" {
			t.Fatalf("capture of the face was %s: %s", got, b.text("quality"))
		}
		verdict := b.text("verdict")
		if !strings.Contains(verdict, "Accepted") || !strings.Contains(verdict, "capture-1.jpg") {
			t.Errorf("verdict says %q", verdict)
		}
		if n := b.eval(`String(document.querySelectorAll('#reasons li').length)`); n != "0" {
			t.Errorf("an accepted photo lists %s reasons: %s", n, b.text("reasons"))
		}
		if img, faces := b.measure("Image"), b.measure("Faces"); img != "640×480" || faces != "1" {
			t.Errorf("measures show image %q and %q faces, want 640×480 and 1", img, faces)
		}
		var eyes float64
		if _, err := fmt.Sscanf(b.measure("Eye distance"), "%g px", &eyes); err != nil || eyes < 40 || eyes > 200 {
			t.Errorf("eye distance shown %q (%v): want the enlarged face's 40-200 px", b.measure("Eye distance"), err)
		}
		for _, label := range []string{"Sharpness", "Brightness", "Contrast", "Head turn", "Head tilt"} {
			if v := b.measure(label); v == "" || v == "—" {
				t.Errorf("measure %s shows %q", label, v)
			}
		}
		if p := b.measure("Profile"); p != "enrolment" {
			t.Errorf("profile %q, want enrolment", p)
		}
		box, colour := b.overlayBox()
		t.Logf("face box drawn at %v (%s); measures: %s", box, colour, strings.ReplaceAll(b.text("measures"), "\n", " "))
		if colour != "green" || box.Dx() < 100 || box.Dx() > 400 || box.Dy() < 100 || box.Dy() > 480 ||
			math.Abs(float64(box.Min.X+box.Max.X)/2-webcamW/2) > 80 {
			t.Errorf("face box drawn at %v in %s; want a green box of 100-400 px around the frame's centre", box, colour)
		}
		if kept := b.eval(`document.getElementById('kept-count').textContent + ' ' + document.querySelectorAll('#kept li').length`); kept != "1 1" {
			t.Errorf("kept photos %q, want 1", kept)
		}
		b.noHorizontalScroll("after an accepted capture")
		shot := b.screenshot("enrol-accepted-1366x768.png")
		// The accepted verdict banner and the green box are on screen.
		if n := browserCountColour(shot, color.RGBA{R: 0x11, G: 0x3d, B: 0x27}); n < 2000 {
			t.Errorf("screenshot has %d pixels of the accepted banner's green", n)
		}
		if n := browserCountColour(shot, color.RGBA{R: 0x1f, G: 0x9d, B: 0x55}); n < 300 {
			t.Errorf("screenshot has %d pixels of the face box's green", n)
		}

		// An uploaded file goes through the same check: LFW's own 250x250
		// crop of the other photo has too small a face, and is not kept.
		small := filepath.Join(testenv.SharedDir(t), browserSmallPhoto)
		b.do("upload", chromedp.SetUploadFiles(chromedp.ID("upload"), []string{small}))
		if got := b.waitJS("the upload's report", `document.body.dataset.lastCheck || ''`); got != "rejected" {
			t.Fatalf("upload of %s was %s: %s", browserSmallPhoto, got, b.text("quality"))
		}
		reason := b.eval(`(() => { const li = document.querySelector('#reasons li[data-code="face_too_small"]'); return li ? li.innerText : '' })()`)
		if !strings.Contains(reason, "Face too small") || !strings.Contains(reason, "limit 40 px") || !strings.Contains(b.text("verdict"), "Colin_Powell_0001.jpg") {
			t.Errorf("the small face's reason shows %q (verdict %q)", reason, b.text("verdict"))
		}
		if kept := b.eval(`document.getElementById('kept-count').textContent`); kept != "1" {
			t.Errorf("after a rejected upload %s photos are kept, want 1", kept)
		}

		b.do("confirm", chromedp.Click(chromedp.ID("confirm")))
		outcome := b.waitJS("the enrolment result", `['ok', 'error'].includes(document.getElementById('result').dataset.outcome) ? document.getElementById('result').dataset.outcome : ''`)
		result := b.text("result")
		if outcome != "ok" || !strings.Contains(result, "Enrolled Colin Powell (CP-0002) with 1 photo") {
			t.Fatalf("confirm: %s: %q", outcome, result)
		}
		p, err := stack.reg.Get(ctx, "CP-0002")
		if err != nil {
			t.Fatalf("the enrolled person is not in the registry: %v", err)
		}
		wantUntil := time.Date(2027, 12, 31, 23, 59, 59, 0, time.UTC)
		if p.Name != "Colin Powell" || p.Organisation != "US State Department" || p.HomePark != "hk" || !slices.Equal(p.Gates, []string{"north-1", "south-2"}) ||
			p.Status != "active" || p.Templates != 1 || p.ValidFrom != nil || p.ValidUntil == nil || p.ValidUntil.Sub(wantUntil).Abs() > 14*time.Hour {
			t.Errorf("stored %+v", p)
		}
		if b.eval(`document.getElementById('external_id').value + document.querySelectorAll('#kept li').length`) != "0" {
			t.Error("the form and the kept photos are not cleared after enrolling")
		}

		b.do("open the list", chromedp.Click(chromedp.ID("tab-people")), chromedp.WaitVisible(chromedp.CSS(`tr[data-id="CP-0002"]`)))
		row := b.eval(`document.querySelector('tr[data-id="CP-0002"]').innerText`)
		for _, want := range []string{"CP-0002", "Colin Powell", "US State Department", "HK", "north-1, south-2", "until 2027-12-31", "active", "Revoke"} {
			if !strings.Contains(row, want) {
				t.Errorf("list row lacks %q:\n%s", want, row)
			}
		}
		if strings.Contains(row, "Delete") {
			t.Error("an officer is offered Delete")
		}
		b.do("search", chromedp.SendKeys(chromedp.ID("q"), "powell"), chromedp.Click(chromedp.CSS(`#search-form button[type=submit]`)))
		b.waitJS("the search", `document.getElementById('people-status').textContent === '1 person.' ? 'y' : ''`)
		b.noHorizontalScroll("people list")
		b.screenshot("people-list-1366x768.png")

		b.do("revoke", chromedp.Click(chromedp.CSS(`button[aria-label="Revoke Colin Powell (CP-0002)"]`)), chromedp.WaitVisible(chromedp.ID("reason-input")))
		if title := b.text("reason-title"); title != "Revoke Colin Powell" {
			t.Errorf("dialog title %q", title)
		}
		b.do("give the reason", chromedp.SendKeys(chromedp.ID("reason-input"), "left the company"), chromedp.Click(chromedp.ID("reason-ok")),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-id="CP-0002"][data-status="revoked"]`)))
		if row := b.eval(`document.querySelector('tr[data-id="CP-0002"]').innerText`); !strings.Contains(row, "revoked") || !strings.Contains(row, "left the company") || !strings.Contains(row, "Reinstate") {
			t.Errorf("revoked row:\n%s", row)
		}
		if p, err := stack.reg.Get(ctx, "CP-0002"); err != nil || p.Status != "revoked" || p.RevokedReason != "left the company" {
			t.Errorf("after revoke the registry holds %+v, %v", p, err)
		}
		for _, p := range b.takeProblems() {
			t.Errorf("browser console: %s", p)
		}
	})

	t.Run("no face refused, nothing stored", func(t *testing.T) {
		people, templates := stack.people(t)
		b := openBrowser(t, sceneClip, artifacts)
		b.logIn(stack.base)
		b.fillPerson("NF-0001", "Nobody Here", "", "sz", "north-1", "2027-12-31")
		if got := b.capture(); got != "rejected" {
			t.Fatalf("capture of a scene with no face was %s: %s", got, b.text("quality"))
		}
		if v := b.text("verdict"); !strings.Contains(v, "Rejected") || !strings.Contains(v, "retake") {
			t.Errorf("verdict says %q", v)
		}
		reason := b.eval(`(() => { const li = document.querySelector('#reasons li[data-code="no_face"]'); return li ? li.innerText : '' })()`)
		if !strings.Contains(reason, "No face found") || !strings.Contains(reason, "face the camera") {
			t.Errorf("no_face reason shows %q; all reasons: %s", reason, b.text("reasons"))
		}
		if faces := b.measure("Faces"); faces != "0" {
			t.Errorf("measures show %q faces", faces)
		}
		if _, colour := b.overlayBox(); colour != "none" {
			t.Errorf("a face box is drawn (%s) for a photo with no face", colour)
		}
		if kept := b.eval(`document.getElementById('kept-count').textContent`); kept != "0" {
			t.Errorf("%s rejected photos kept", kept)
		}
		if status := b.text("camera-status"); !strings.Contains(status, "rejected") || !strings.Contains(status, "No face found") {
			t.Errorf("status line says %q", status)
		}
		b.do("confirm", chromedp.Click(chromedp.ID("confirm")))
		if res := b.text("result"); !strings.Contains(res, "No accepted photo") {
			t.Errorf("confirm without an accepted photo says %q", res)
		}
		b.noHorizontalScroll("after a rejected capture")
		shot := b.screenshot("enrol-no-face-1366x768.png")
		if n := browserCountColour(shot, color.RGBA{R: 0x4a, G: 0x1a, B: 0x1a}); n < 2000 {
			t.Errorf("screenshot has %d pixels of the rejected banner's red", n)
		}

		if _, err := stack.reg.Get(ctx, "NF-0001"); !errors.Is(err, enroll.ErrNotFound) {
			t.Errorf("NF-0001 after a refused capture: %v, want not found", err)
		}
		if p, tpl := stack.people(t); p != people || tpl != templates {
			t.Errorf("people/templates went from %d/%d to %d/%d", people, templates, p, tpl)
		}
		for _, p := range b.takeProblems() {
			t.Errorf("browser console: %s", p)
		}
	})
}

// TestBrowserPageServing checks what the page's files are served with:
// the strict CSP, the camera allowed for the page's own origin only,
// revalidation by ETag, and nothing but the three routes.
func TestBrowserPageServing(t *testing.T) {
	srv := httptest.NewServer(webHandler())
	defer srv.Close()
	get := func(method, path string, header ...string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(body)
	}
	for _, c := range []struct{ path, ctype, contains string }{
		{"/", "text/html; charset=utf-8", `<script src="/static/app.js" defer></script>`},
		{"/login", "text/html; charset=utf-8", `id="login-form"`},
		{"/static/app.js", "text/javascript; charset=utf-8", "getUserMedia"},
		{"/static/login.js", "text/javascript; charset=utf-8", "/api/v1/login"},
		{"/static/app.css", "text/css; charset=utf-8", "1366x768"},
		{"/static/favicon.svg", "image/svg+xml", "<svg"},
	} {
		resp, body := get("GET", c.path)
		h := resp.Header
		if resp.StatusCode != http.StatusOK || h.Get("Content-Type") != c.ctype || !strings.Contains(body, c.contains) {
			t.Errorf("GET %s: %d %q, body has %q: %v", c.path, resp.StatusCode, h.Get("Content-Type"), c.contains, strings.Contains(body, c.contains))
		}
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: CSP %q lacks %q", c.path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") || strings.Contains(csp, "http") {
			t.Errorf("GET %s: CSP %q is not strict", c.path, csp)
		}
		if pp := h.Get("Permissions-Policy"); !strings.Contains(pp, "camera=(self)") || !strings.Contains(pp, "microphone=()") {
			t.Errorf("GET %s: Permissions-Policy %q", c.path, pp)
		}
		if h.Get("Cache-Control") != "no-cache" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s: Cache-Control %q, nosniff %q, frame options %q", c.path, h.Get("Cache-Control"), h.Get("X-Content-Type-Options"), h.Get("X-Frame-Options"))
		}
		etag := h.Get("ETag")
		if etag == "" {
			t.Errorf("GET %s: no ETag", c.path)
			continue
		}
		if again, _ := get("GET", c.path, "If-None-Match", etag); again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d, want 304", c.path, again.StatusCode)
		}
	}
	// No inline script or style anywhere: the CSP would block it.
	for _, page := range []string{"/", "/login"} {
		_, body := get("GET", page)
		if strings.Contains(body, "<script>") || strings.Contains(body, "style=") || inlineHandler.MatchString(body) {
			t.Errorf("%s has inline script or style", page)
		}
	}
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/static/", http.StatusNotFound}, // no listing
		{"GET", "/static/nothing.js", http.StatusNotFound},
		{"GET", "/index.html", http.StatusNotFound},
		{"GET", "/web/index.html", http.StatusNotFound},
		{"GET", "/static/../web.go", http.StatusNotFound},
		{"POST", "/", http.StatusMethodNotAllowed},
		{"DELETE", "/login", http.StatusMethodNotAllowed},
		{"HEAD", "/", http.StatusOK},
	} {
		if resp, _ := get(c.method, c.path); resp.StatusCode != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.status)
		}
	}
}

var inlineHandler = regexp.MustCompile(`\son[a-z]+=`)

func browserCountColour(img image.Image, want color.RGBA) int {
	n := 0
	b := img.Bounds()
	near := func(v uint32, w uint8) bool { d := int(v>>8) - int(w); return d >= -6 && d <= 6 }
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r, want.R) && near(g, want.G) && near(bl, want.B) {
				n++
			}
		}
	}
	return n
}
