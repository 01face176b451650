package camera

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseURI(t *testing.T) {
	good := []struct {
		in   string
		want Spec
		str  string
	}{
		{"file:///data/clip.avi", Spec{Kind: KindFile, Path: "/data/clip.avi"}, "file:///data/clip.avi"},
		{"file://localhost/data/my%20clip.avi", Spec{Kind: KindFile, Path: "/data/my clip.avi"}, "file:///data/my%20clip.avi"},
		{"/data/clip.avi", Spec{Kind: KindFile, Path: "/data/clip.avi"}, "file:///data/clip.avi"},
		{"  clips/../clip.mp4 ", Spec{Kind: KindFile, Path: "clip.mp4"}, "clip.mp4"},
		{"take:2.mp4", Spec{Kind: KindFile, Path: "take:2.mp4"}, "take:2.mp4"},
		{"device:0", Spec{Kind: KindDevice, Index: 0}, "device:0"},
		{"device:12", Spec{Kind: KindDevice, Index: 12}, "device:12"},
		{"/dev/video2", Spec{Kind: KindDevice, Index: 2}, "device:2"},
		{"/dev/v4l/by-id/usb-cam-video-index0", Spec{Kind: KindDevice, Path: "/dev/v4l/by-id/usb-cam-video-index0", Index: -1}, "/dev/v4l/by-id/usb-cam-video-index0"},
		{"rtsp://10.0.0.7:554/stream1", Spec{Kind: KindStream, Path: "rtsp://10.0.0.7:554/stream1"}, "rtsp://10.0.0.7:554/stream1"},
		{"rtsp://admin:s3cret@cam-3.gate/h264", Spec{Kind: KindStream, Path: "rtsp://admin:s3cret@cam-3.gate/h264"}, "rtsp://admin:xxxxx@cam-3.gate/h264"},
		{"http://192.168.1.20/video.mjpg", Spec{Kind: KindStream, Path: "http://192.168.1.20/video.mjpg"}, "http://192.168.1.20/video.mjpg"},
		{"HTTPS://cam/mjpeg?fps=10", Spec{Kind: KindStream, Path: "https://cam/mjpeg?fps=10"}, "https://cam/mjpeg?fps=10"},
	}
	for _, tc := range good {
		got, err := ParseURI(tc.in)
		if err != nil {
			t.Errorf("ParseURI(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseURI(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if got.String() != tc.str {
			t.Errorf("ParseURI(%q).String() = %q, want %q", tc.in, got.String(), tc.str)
		}
		if live := tc.want.Kind != KindFile; got.Live() != live {
			t.Errorf("ParseURI(%q).Live() = %v", tc.in, got.Live())
		}
	}

	bad := []struct{ in, says string }{
		{"", "empty"},
		{"   ", "empty"},
		{"device:", "device:N"},
		{"device:-1", "device:N"},
		{"device:front", "device:N"},
		{"file:clip.avi", "absolute path"},
		{"file://nas/share/clip.avi", `host "nas"`},
		{"file:///clip.avi?loop=1", "camera options"},
		{"file:///", "no path"},
		{"rtsp:///stream", "no host"},
		{"http://:8080/video", "no host"},
		{"http://cam:99999/video", "port"},
		{"ftp://cam/video", `unsupported scheme "ftp"`},
		{"udp://user:pw@239.0.0.1:5000", `unsupported scheme "udp"`},
	}
	for _, tc := range bad {
		_, err := ParseURI(tc.in)
		if !errors.Is(err, ErrBadURI) {
			t.Errorf("ParseURI(%q) = %v, want ErrBadURI", tc.in, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.says) {
			t.Errorf("ParseURI(%q) error %q does not say %q", tc.in, err, tc.says)
		}
		if strings.Contains(err.Error(), "pw@") {
			t.Errorf("ParseURI(%q) error leaks the password: %q", tc.in, err)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	stream, err := ParseURI("rtsp://cam.invalid/stream")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		spec Spec
		opts Options
		want error
	}{
		{"zero spec", Spec{}, Options{}, ErrBadURI},
		{"loop on a live source", stream, Options{Loop: true}, ErrOptions},
		{"fast on a live source", stream, Options{Fast: true}, ErrOptions},
		{"negative backoff", stream, Options{Backoff: Backoff{Initial: -time.Second}}, ErrOptions},
		{"jitter above 1", stream, Options{Backoff: Backoff{Jitter: 1.5}}, ErrOptions},
		{"max below initial", stream, Options{Backoff: Backoff{Initial: time.Second, Max: time.Millisecond}}, ErrOptions},
	} {
		if _, err := New(tc.spec, tc.opts); !errors.Is(err, tc.want) {
			t.Errorf("%s: New = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	b := Backoff{Initial: 500 * time.Millisecond, Max: 30 * time.Second}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for n, w := range want {
		if got := b.Delay(n); got != w {
			t.Errorf("Delay(%d) = %v, want %v", n, got, w)
		}
	}
	if got := (Backoff{}).Delay(0); got != DefaultBackoffInitial {
		t.Errorf("zero Backoff: Delay(0) = %v, want %v", got, DefaultBackoffInitial)
	}
	if got := (Backoff{}).Delay(1000); got != DefaultBackoffMax {
		t.Errorf("zero Backoff: Delay(1000) = %v, want the cap %v", got, DefaultBackoffMax)
	}
	b.Jitter = 0.5
	spread := map[time.Duration]bool{}
	for range 200 {
		d := b.Delay(2)
		if d < time.Second || d > 2*time.Second {
			t.Fatalf("jittered Delay(2) = %v, want within [1s, 2s]", d)
		}
		spread[d] = true
	}
	if len(spread) < 2 {
		t.Errorf("jitter gave one value for 200 draws")
	}
}
