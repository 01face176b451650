package server

import (
	"bytes"
	"slices"
	"sync"
	"time"
)

// Frame is the latest annotated picture of one camera.
type Frame struct {
	Camera   string
	JPEG     []byte
	Captured time.Time
	// Seq increases with every frame published for this camera, so a page
	// asks only for frames it has not shown.
	Seq uint64
}

// LiveFrames keeps the latest annotated JPEG per camera for the live page.
// The pipeline publishes; pages poll. Only the newest frame is kept: a page
// that falls behind skips frames instead of queueing them.
type LiveFrames struct {
	mu     sync.RWMutex
	frames map[string]Frame
}

// NewLiveFrames returns a hub that already lists cameras (tiles appear
// before their first frame).
func NewLiveFrames(cameras ...string) *LiveFrames {
	h := &LiveFrames{frames: map[string]Frame{}}
	for _, c := range cameras {
		h.frames[c] = Frame{Camera: c}
	}
	return h
}

// PublishFrame replaces camera's frame. It copies jpeg, so the caller may
// reuse or free its buffer at once: gocv's NativeByteBuffer.GetBytes is
// backed by C memory that its Close frees. (The copy costs ~50 KB per frame,
// nothing next to encoding it.)
func (h *LiveFrames) PublishFrame(camera string, jpeg []byte, captured time.Time) {
	own := bytes.Clone(jpeg)
	h.mu.Lock()
	defer h.mu.Unlock()
	prev := h.frames[camera]
	h.frames[camera] = Frame{Camera: camera, JPEG: own, Captured: captured, Seq: prev.Seq + 1}
}

// Latest returns camera's newest frame; ok is false for an unknown camera.
// A known camera with no frame yet has Seq 0 and no JPEG.
func (h *LiveFrames) Latest(camera string) (Frame, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	f, ok := h.frames[camera]
	return f, ok
}

// Cameras lists the cameras, sorted.
func (h *LiveFrames) Cameras() []string {
	h.mu.RLock()
	defer h.mu.RUnlock()
	names := make([]string, 0, len(h.frames))
	for c := range h.frames {
		names = append(names, c)
	}
	slices.Sort(names)
	return names
}
