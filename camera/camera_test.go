package camera

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/internal/testenv"
)

// TestReadRealClip decodes every frame of the real 10 s stage clip and
// checks that a face is found in one of them by the real recogniser.
func TestReadRealClip(t *testing.T) {
	src, err := OpenFile(filepath.Join(testenv.SharedDir(t), "media", "short_hamilton_clip.mp4"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	info := src.Info()
	if info.Width != 640 || info.Height != 360 || info.FPS <= 0 {
		t.Fatalf("info %+v, want 640x360 with a frame rate", info)
	}
	rec, err := facerec.New(facerec.Config{ModelDir: testenv.ModelDir(t), Detector: facerec.DetectorHOG})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	n, faces := 0, 0
	for {
		f, err := src.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.Mat.Cols() != 640 || f.Mat.Rows() != 360 || f.Seq != n {
			t.Fatalf("frame %d: %dx%d seq %d", n, f.Mat.Cols(), f.Mat.Rows(), f.Seq)
		}
		if n%50 == 0 { // a sample: detection on every frame is the pipeline's job
			jpg, err := f.JPEG()
			if err != nil {
				t.Fatal(err)
			}
			found, err := rec.Faces(jpg)
			if err != nil {
				t.Fatal(err)
			}
			faces += len(found)
		}
		f.Close()
		n++
	}
	t.Logf("%d frames at %.2f fps (container says %d); %d faces in the sampled frames", n, info.FPS, info.Frames, faces)
	if n < 200 || (info.Frames > 0 && (n < info.Frames-2 || n > info.Frames+2)) {
		t.Fatalf("read %d frames, container says %d", n, info.Frames)
	}
	if faces == 0 {
		t.Fatal("no face found in any sampled frame of the clip")
	}
}

func TestOpenMissingFile(t *testing.T) {
	if _, err := OpenFile(filepath.Join(t.TempDir(), "nope.mp4")); err == nil {
		t.Fatal("opened a file that does not exist")
	}
}
