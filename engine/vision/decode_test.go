package vision

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	stdjpeg "image/jpeg"
	"testing"

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
