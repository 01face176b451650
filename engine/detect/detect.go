// Package detect finds faces in full frames before any go-face work: YuNet
// (OpenCV dnn) on a downscaled copy of the frame, with boxes and five
// landmarks mapped back to full-resolution pixels. The same detector serves
// `serve`, `identify` and enrolment.
package detect

import "image"

// Landmark indices in Detection.Landmarks, in YuNet's order. "Right" and
// "left" are the person's own (the right eye appears on the image's left).
const (
	RightEye = iota
	LeftEye
	NoseTip
	RightMouth
	LeftMouth
)

// Detection is one face found in a frame, in full-resolution pixels.
type Detection struct {
	Box       image.Rectangle
	Score     float32
	Landmarks [5]image.Point
}
