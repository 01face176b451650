package track

import (
	"image"
	"testing"
	"time"
)

// walker returns the box of a face growing from size 25 to 200 px while
// drifting, at frame i of n (a synthetic approach, like the clips).
func walker(x0, i, n int) image.Rectangle {
	size := 25 + (175*i)/n
	cx, cy := x0+i/4, 200+(i%5)
	return image.Rect(cx-size/2, cy-size/2, cx+size/2, cy+size/2)
}

func TestOneTrackPerWalkerEvenWithSkippedFrames(t *testing.T) {
	tr, err := New(DefaultConfig, 0)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1000, 0)
	seen := map[int64]int{}
	// Two walkers side by side, processed every third frame at 25 fps.
	for i := 0; i < 75; i += 3 {
		now := start.Add(time.Duration(i) * 40 * time.Millisecond)
		ids, ended := tr.Update(now, []image.Rectangle{walker(150, i, 75), walker(480, i, 75)})
		if len(ended) != 0 {
			t.Fatalf("frame %d: track ended early: %+v", i, ended)
		}
		if ids[0] == ids[1] {
			t.Fatalf("frame %d: two faces share track %d", i, ids[0])
		}
		for _, id := range ids {
			seen[id]++
		}
	}
	if len(seen) != 2 {
		t.Fatalf("want 2 tracks, got %v", seen)
	}
	// Both are lost once not seen for longer than MaxGap.
	_, ended := tr.Update(start.Add(3*time.Second+DefaultConfig.MaxGap+time.Millisecond), nil)
	if len(ended) != 2 || ended[0].Reason != "lost" {
		t.Fatalf("ended %+v", ended)
	}
}

func TestNextWalkerAfterGapGetsNewTrack(t *testing.T) {
	tr, _ := New(DefaultConfig, 100)
	now := time.Unix(0, 0)
	ids, _ := tr.Update(now, []image.Rectangle{image.Rect(300, 200, 500, 400)})
	first := ids[0]
	if first != 101 {
		t.Fatalf("first id %d, want 101", first)
	}
	// The same place a second later: the previous walker has gone (gap).
	ids, ended := tr.Update(now.Add(time.Second), []image.Rectangle{image.Rect(310, 210, 340, 240)})
	if len(ended) != 1 || ended[0].ID != first || ids[0] == first {
		t.Fatalf("ids %v ended %+v", ids, ended)
	}
}

func TestFarApartFacesDoNotSwap(t *testing.T) {
	tr, _ := New(DefaultConfig, 0)
	now := time.Unix(0, 0)
	a, b := image.Rect(100, 100, 140, 140), image.Rect(400, 100, 440, 140)
	ids1, _ := tr.Update(now, []image.Rectangle{a, b})
	// Reported in the other order next frame: ids follow the boxes.
	ids2, _ := tr.Update(now.Add(40*time.Millisecond), []image.Rectangle{b.Add(image.Pt(2, 0)), a.Add(image.Pt(2, 0))})
	if ids2[0] != ids1[1] || ids2[1] != ids1[0] {
		t.Fatalf("ids swapped: %v then %v", ids1, ids2)
	}
	// A box far from both starts a third track.
	ids3, _ := tr.Update(now.Add(80*time.Millisecond), []image.Rectangle{image.Rect(250, 300, 290, 340)})
	if ids3[0] == ids1[0] || ids3[0] == ids1[1] {
		t.Fatalf("distant face joined an existing track: %v", ids3)
	}
}

func TestMaxAgeEndsStationaryFace(t *testing.T) {
	cfg := DefaultConfig
	cfg.MaxAge = time.Second
	tr, _ := New(cfg, 0)
	box := image.Rect(10, 10, 60, 60)
	now := time.Unix(0, 0)
	var ended []Ended
	for i := 0; i < 40 && len(ended) == 0; i++ {
		_, ended = tr.Update(now.Add(time.Duration(i)*40*time.Millisecond), []image.Rectangle{box})
	}
	if len(ended) != 1 || ended[0].Reason != "aged" {
		t.Fatalf("ended %+v", ended)
	}
}

func TestValidate(t *testing.T) {
	bad := DefaultConfig
	bad.MinIoU = 0
	if bad.Validate() == nil {
		t.Error("min_iou 0 accepted")
	}
	bad = DefaultConfig
	bad.MaxAge = bad.MaxGap
	if bad.Validate() == nil {
		t.Error("max_age <= max_gap accepted")
	}
	if IoU(image.Rect(0, 0, 10, 10), image.Rect(5, 0, 15, 10)) != 50.0/150 {
		t.Error("IoU arithmetic")
	}
}
