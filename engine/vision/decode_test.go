package vision

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	stdjpeg "image/jpeg"
	"testing"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/internal/testenv"
)

func decodedConfig(t *testing.T, jpg []byte) image.Config {
	t.Helper()
	cfg, format, err := image.DecodeConfig(bytes.NewReader(jpg))
	if err != nil || format != "jpeg" {
		t.Fatalf("normalised output is not a JPEG: %s %v", format, err)
	}
	return cfg
}

func TestDecodeRealImages(t *testing.T) {
	d := NewDecoder(engine.ImageLimits{})
	cases := []struct {
		path          string
		format        string
		width, height int
	}{
		{"datasets/lfw/images/Colin_Powell/Colin_Powell_0001.jpg", "jpeg", 250, 250},
		{"media/lin-manuel-miranda.png", "png", 0, 0},
		{"media/obama-1080p.jpg", "jpeg", 1024, 576}, // 1920x1080 downscaled to MaxSide
	}
	for _, c := range cases {
		img, err := d.Decode(testenv.SharedFile(t, c.path))
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		if img.Format != c.format {
			t.Errorf("%s: format %s, want %s", c.path, img.Format, c.format)
		}
		cfg := decodedConfig(t, img.JPEG)
		if cfg.ColorModel != color.YCbCrModel {
			t.Errorf("%s: output colour model %v, want 3-channel YCbCr", c.path, cfg.ColorModel)
		}
		if cfg.Width != img.Width || cfg.Height != img.Height {
			t.Errorf("%s: Image says %dx%d, JPEG is %dx%d", c.path, img.Width, img.Height, cfg.Width, cfg.Height)
		}
		if c.width != 0 && (img.Width != c.width || img.Height != c.height) {
			t.Errorf("%s: %dx%d, want %dx%d", c.path, img.Width, img.Height, c.width, c.height)
		}
		if max(img.Width, img.Height) > engine.DefaultImageLimits.MaxSide {
			t.Errorf("%s: %dx%d exceeds MaxSide", c.path, img.Width, img.Height)
		}
	}
}

func TestDecodeGrayscaleBecomesColour(t *testing.T) {
	// go-face rejects 1-channel JPEGs; the decoder must hand it 3 channels.
	gray := image.NewGray(image.Rect(0, 0, 64, 48))
	for i := range gray.Pix {
		gray.Pix[i] = uint8(i)
	}
	var buf bytes.Buffer
	if err := stdjpeg.Encode(&buf, gray, nil); err != nil {
		t.Fatal(err)
	}
	img, err := NewDecoder(engine.ImageLimits{}).Decode(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if cfg := decodedConfig(t, img.JPEG); cfg.ColorModel != color.YCbCrModel {
		t.Fatalf("colour model %v, want YCbCr", cfg.ColorModel)
	}
}

func TestDecodeRejectsBadInput(t *testing.T) {
	jpg := testenv.SharedFile(t, "datasets/lfw/images/Colin_Powell/Colin_Powell_0001.jpg")
	d := NewDecoder(engine.ImageLimits{})
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"truncated JPEG", jpg[:len(jpg)/2], engine.ErrUndecodable},
		{"corrupt JPEG body", append(append([]byte{}, jpg[:600]...), bytes.Repeat([]byte{0xff, 0x00, 0x13}, 400)...), engine.ErrUndecodable},
		{"text file", []byte("name,id\nAda,A123\n"), engine.ErrUnsupportedFormat},
		{"too large", append(jpg, make([]byte, engine.DefaultImageLimits.MaxBytes)...), engine.ErrImageTooLarge},
	}
	for _, c := range cases {
		if _, err := d.Decode(c.data); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

// TestDecodeMatFullResolution: the detector's input keeps every pixel;
// MaxSide applies only to the normalised JPEG.
func TestDecodeMatFullResolution(t *testing.T) {
	d := NewDecoder(engine.ImageLimits{})
	for _, c := range []struct {
		path          string
		format        string
		width, height int
	}{
		{"media/obama-1080p.jpg", "jpeg", 1920, 1080},
		{"datasets/idols/images/pristin.jpg", "jpeg", 2100, 1040},
		{"datasets/lfw/images/Colin_Powell/Colin_Powell_0001.jpg", "jpeg", 250, 250},
		{"media/lin-manuel-miranda.png", "png", 704, 612},
	} {
		mat, format, err := d.DecodeMat(testenv.SharedFile(t, c.path))
		if err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		if format != c.format || mat.Cols() != c.width || mat.Rows() != c.height || mat.Type() != gocv.MatTypeCV8UC3 {
			t.Errorf("%s: %s %dx%d type %v, want %s %dx%d 8-bit BGR", c.path, format, mat.Cols(), mat.Rows(), mat.Type(), c.format, c.width, c.height)
		}
		mat.Close()
	}
}

// TestDecodeMatRejectsBadInput: the same checks as Decode, before OpenCV.
func TestDecodeMatRejectsBadInput(t *testing.T) {
	jpg := testenv.SharedFile(t, "datasets/lfw/images/Colin_Powell/Colin_Powell_0001.jpg")
	d := NewDecoder(engine.ImageLimits{})
	small := NewDecoder(engine.ImageLimits{MaxWidth: 200, MaxHeight: 200})
	for _, c := range []struct {
		name string
		d    *Decoder
		data []byte
		want error
	}{
		{"truncated JPEG", d, jpg[:len(jpg)/2], engine.ErrUndecodable},
		{"corrupt JPEG body", d, append(append([]byte{}, jpg[:600]...), bytes.Repeat([]byte{0xff, 0x00, 0x13}, 400)...), engine.ErrUndecodable},
		{"text file", d, []byte("name,id\nAda,A123\n"), engine.ErrUnsupportedFormat},
		{"over the pixel limits", small, jpg, engine.ErrImageTooLarge},
	} {
		mat, _, err := c.d.DecodeMat(c.data)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		if err == nil {
			mat.Close()
		}
	}
}

// withOrientation inserts an EXIF APP1 segment carrying only the
// orientation tag right after the JPEG's SOI marker.
func withOrientation(jpg []byte, orientation uint16) []byte {
	tiff := []byte{'I', 'I', 42, 0, 8, 0, 0, 0, // little-endian header, IFD at 8
		1, 0, // one entry
		0x12, 0x01, 3, 0, 1, 0, 0, 0, byte(orientation), byte(orientation >> 8), 0, 0, // 0x0112 SHORT x1
		0, 0, 0, 0} // no next IFD
	payload := append([]byte("Exif\x00\x00"), tiff...)
	seg := append([]byte{0xff, 0xe1, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}, payload...)
	out := append([]byte{}, jpg[:2]...)
	out = append(out, seg...)
	return append(out, jpg[2:]...)
}

// TestDecodeMatAppliesEXIFOrientation: a photo taken with the phone turned
// is decoded upright, so face boxes are in the pixels a person sees.
func TestDecodeMatAppliesEXIFOrientation(t *testing.T) {
	jpg := withOrientation(testenv.SharedFile(t, "media/obama-480p.jpg"), 6) // rotate 90° clockwise to display
	mat, _, err := NewDecoder(engine.ImageLimits{}).DecodeMat(jpg)
	if err != nil {
		t.Fatal(err)
	}
	defer mat.Close()
	if mat.Cols() != 480 || mat.Rows() != 853 {
		t.Fatalf("decoded %dx%d, want the 853x480 photo turned upright to 480x853", mat.Cols(), mat.Rows())
	}
}
