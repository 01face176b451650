package camera

import (
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Kind is the sort of source a URI names. It decides how the source is
// opened and whether a failure is retried (live sources) or final (files).
type Kind string

const (
	// KindFile is a video file, read through OpenCV's FFmpeg backend.
	KindFile Kind = "file"
	// KindDevice is a local capture device, read through V4L2.
	KindDevice Kind = "device"
	// KindStream is a network stream (RTSP, or HTTP such as the multipart
	// MJPEG that IP cameras serve), read through OpenCV's FFmpeg backend.
	KindStream Kind = "stream"
)

// Spec is a parsed source URI. Build it with ParseURI.
type Spec struct {
	Kind Kind
	// Path is the file path (KindFile), the device node when one was given
	// (KindDevice, e.g. /dev/v4l/by-id/...), or the full URL (KindStream,
	// credentials included: never log it, use String).
	Path string
	// Index is the V4L2 device index for KindDevice, -1 when Path names the
	// device instead.
	Index int
}

// Live reports whether the source is a camera rather than a recording:
// live sources are reconnected when they fail; files are not.
func (s Spec) Live() bool { return s.Kind == KindDevice || s.Kind == KindStream }

// String returns the URI with any password redacted, fit for logs and labels.
func (s Spec) String() string {
	switch s.Kind {
	case KindFile:
		if filepath.IsAbs(s.Path) {
			return (&url.URL{Scheme: "file", Path: s.Path}).String()
		}
		return s.Path
	case KindDevice:
		if s.Index >= 0 && s.Path == "" {
			return "device:" + strconv.Itoa(s.Index)
		}
		return s.Path
	case KindStream:
		if u, err := url.Parse(s.Path); err == nil {
			return u.Redacted()
		}
		return "stream:(unparsable)"
	}
	return ""
}

// The schemes ParseURI understands; anything else that looks like a URL is
// refused rather than handed to OpenCV as a file name.
var streamSchemes = map[string]bool{"rtsp": true, "rtsps": true, "http": true, "https": true}

var (
	videoNode = regexp.MustCompile(`^/dev/video([0-9]+)$`)
	urlScheme = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*):`)
)

// ParseURI parses a configured camera source:
//
//	file:///data/clip.avi, /data/clip.avi, clip.avi   a video file
//	device:0, /dev/video0, /dev/v4l/by-id/...         a local V4L2 device
//	rtsp://user:pass@host/stream, rtsps://...         an RTSP stream
//	http://host/video.mjpg, https://...               an HTTP stream (MJPEG)
//
// Errors wrap ErrBadURI and say what was expected.
func ParseURI(raw string) (Spec, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return Spec{}, fmt.Errorf("%w: empty source", ErrBadURI)
	}
	if strings.HasPrefix(s, "/dev/") {
		if m := videoNode.FindStringSubmatch(s); m != nil {
			n, err := strconv.Atoi(m[1])
			if err != nil {
				return Spec{}, fmt.Errorf("%w: %q: device number: %v", ErrBadURI, s, err)
			}
			return Spec{Kind: KindDevice, Index: n}, nil
		}
		return Spec{Kind: KindDevice, Path: filepath.Clean(s), Index: -1}, nil
	}
	m := urlScheme.FindStringSubmatch(s)
	if m == nil {
		return Spec{Kind: KindFile, Path: filepath.Clean(s)}, nil
	}
	scheme := strings.ToLower(m[1])
	switch {
	case scheme == "device":
		return parseDevice(s, strings.TrimPrefix(s[len(m[0]):], "//"))
	case scheme == "file":
		return parseFile(s)
	case streamSchemes[scheme]:
		return parseStream(s, scheme)
	case strings.HasPrefix(s[len(m[0]):], "//"):
		return Spec{}, fmt.Errorf("%w: %q: unsupported scheme %q (want file, device, rtsp, rtsps, http or https)", ErrBadURI, redactRaw(s), scheme)
	}
	// "name:with-colon.avi" is a plain relative file name, not a URL.
	return Spec{Kind: KindFile, Path: filepath.Clean(s)}, nil
}

func parseDevice(raw, num string) (Spec, error) {
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return Spec{}, fmt.Errorf("%w: %q: want device:N with N a device index ≥ 0 (as in /dev/videoN)", ErrBadURI, raw)
	}
	return Spec{Kind: KindDevice, Index: n}, nil
}

func parseFile(raw string) (Spec, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Spec{}, fmt.Errorf("%w: %q: %v", ErrBadURI, raw, err)
	}
	switch {
	case u.Opaque != "":
		return Spec{}, fmt.Errorf("%w: %q: a file URI needs an absolute path, file:///dir/clip.avi (or give the plain path)", ErrBadURI, raw)
	case u.Host != "" && u.Host != "localhost":
		return Spec{}, fmt.Errorf("%w: %q: file URI names host %q; only local files are read (file:///path)", ErrBadURI, raw, u.Host)
	case u.RawQuery != "" || u.Fragment != "":
		return Spec{}, fmt.Errorf("%w: %q: file URI has a query or fragment; loop and pacing are camera options, not part of the URI", ErrBadURI, raw)
	case u.Path == "" || u.Path == "/":
		return Spec{}, fmt.Errorf("%w: %q: file URI has no path", ErrBadURI, raw)
	}
	return Spec{Kind: KindFile, Path: filepath.Clean(u.Path)}, nil
}

func parseStream(raw, scheme string) (Spec, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url's message quotes the raw text, which may hold a password.
		return Spec{}, fmt.Errorf("%w: %s URL does not parse", ErrBadURI, scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return Spec{}, fmt.Errorf("%w: %q: %s URL has no host (want %s://host[:port]/path)", ErrBadURI, u.Redacted(), scheme, scheme)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return Spec{}, fmt.Errorf("%w: %q: port %q out of range", ErrBadURI, u.Redacted(), p)
		}
	}
	// FFmpeg matches protocol names case-sensitively.
	return Spec{Kind: KindStream, Path: scheme + raw[len(scheme):]}, nil
}

// redactRaw hides a password in text that is URL-like but not one we accept.
func redactRaw(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return s
}
