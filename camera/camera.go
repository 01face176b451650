// Package camera produces frames for the engine. This first source reads a
// video file (or any URI OpenCV's videoio opens) through GoCV; live streams
// and the frame pipeline build on the same Frame type.
package camera

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine/vision"
)

// Frame is one decoded BGR frame. The receiver owns Mat and must Close it.
type Frame struct {
	Seq int
	// PTS is the frame's presentation time from the start of the stream.
	PTS time.Duration
	Mat gocv.Mat
}

// JPEG encodes the frame as the normalised JPEG the recogniser reads.
func (f Frame) JPEG() ([]byte, error) { return vision.EncodeJPEG(f.Mat) }

// Close releases the frame's pixels.
func (f Frame) Close() error { return f.Mat.Close() }

// Info describes a stream as OpenCV reports it.
type Info struct {
	Width, Height int
	FPS           float64
	Frames        int // 0 when unknown (live streams)
}

// FileSource reads frames from a video file.
type FileSource struct {
	path string
	vc   *gocv.VideoCapture
	info Info
	seq  int
}

// OpenFile opens a video file for reading.
func OpenFile(path string) (*FileSource, error) {
	vc, err := gocv.VideoCaptureFile(path)
	if err != nil {
		return nil, fmt.Errorf("camera: open %s: %w", path, err)
	}
	if !vc.IsOpened() {
		vc.Close()
		return nil, fmt.Errorf("camera: open %s: OpenCV cannot read it", path)
	}
	info := Info{
		Width:  int(vc.Get(gocv.VideoCaptureFrameWidth)),
		Height: int(vc.Get(gocv.VideoCaptureFrameHeight)),
		FPS:    vc.Get(gocv.VideoCaptureFPS),
		Frames: int(vc.Get(gocv.VideoCaptureFrameCount)),
	}
	return &FileSource{path: path, vc: vc, info: info}, nil
}

// Info reports the stream's geometry and rate.
func (s *FileSource) Info() Info { return s.info }

// Next returns the next frame, or io.EOF after the last one.
func (s *FileSource) Next(ctx context.Context) (Frame, error) {
	if err := ctx.Err(); err != nil {
		return Frame{}, err
	}
	m := gocv.NewMat()
	if ok := s.vc.Read(&m); !ok || m.Empty() {
		m.Close()
		return Frame{}, io.EOF
	}
	f := Frame{Seq: s.seq, Mat: m}
	if s.info.FPS > 0 {
		f.PTS = time.Duration(float64(s.seq) / s.info.FPS * float64(time.Second))
	}
	s.seq++
	return f, nil
}

// Close releases the capture.
func (s *FileSource) Close() error {
	if s.vc == nil {
		return errors.New("camera: already closed")
	}
	err := s.vc.Close()
	s.vc = nil
	return err
}
