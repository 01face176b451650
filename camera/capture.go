package camera

import (
	"errors"
	"fmt"
	"os"

	"gocv.io/x/gocv"
)

// Errors callers can tell apart with errors.Is.
var (
	// ErrBadURI: the configured source does not parse.
	ErrBadURI = errors.New("camera: bad source URI")
	// ErrOpen: OpenCV could not open the source, or a file had no frame.
	ErrOpen = errors.New("camera: cannot open source")
	// ErrClosed: Next was called after Run stopped on cancellation.
	ErrClosed = errors.New("camera: closed")
	// ErrRunning: Run was called a second time.
	ErrRunning = errors.New("camera: Run called twice")
	// ErrOptions: the options do not fit the source.
	ErrOptions = errors.New("camera: bad options")
)

// capture is the part of gocv.VideoCapture the camera uses. It keeps cgo
// behind an interface so tests can inject a failing source.
type capture interface {
	Read(*gocv.Mat) bool
	Get(gocv.VideoCaptureProperties) float64
	Close() error
}

// opener opens a capture for a spec.
type opener func(Spec) (capture, error)

var _ capture = (*gocv.VideoCapture)(nil)

// openCV opens spec through GoCV: files and network streams through the
// FFmpeg backend (it reads RTSP and multipart MJPEG over HTTP), devices
// through V4L2. Errors never include a stream URL, which may hold a password.
func openCV(spec Spec) (capture, error) {
	var (
		vc  *gocv.VideoCapture
		err error
	)
	switch spec.Kind {
	case KindFile:
		// OpenCV only says "cannot open"; the OS says why.
		if _, statErr := os.Stat(spec.Path); statErr != nil {
			return nil, fmt.Errorf("%w: %w", ErrOpen, statErr)
		}
		vc, err = gocv.VideoCaptureFileWithAPI(spec.Path, gocv.VideoCaptureFFmpeg)
	case KindStream:
		vc, err = gocv.VideoCaptureFileWithAPI(spec.Path, gocv.VideoCaptureFFmpeg)
	case KindDevice:
		if spec.Index >= 0 {
			vc, err = gocv.VideoCaptureDeviceWithAPI(spec.Index, gocv.VideoCaptureV4L2)
		} else {
			vc, err = gocv.VideoCaptureFileWithAPI(spec.Path, gocv.VideoCaptureV4L2)
		}
	default:
		return nil, fmt.Errorf("%w: unknown source kind %q", ErrBadURI, spec.Kind)
	}
	if err != nil || !vc.IsOpened() {
		if vc != nil {
			vc.Close()
		}
		return nil, fmt.Errorf("%w %s: OpenCV could not open it", ErrOpen, spec)
	}
	return vc, nil
}
