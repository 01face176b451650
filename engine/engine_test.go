package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"math"
	"testing"
)

func TestDistanceIsEuclideanNotSquared(t *testing.T) {
	var a, b Embedding
	a[0], b[0] = 0.3, 0
	a[1], b[1] = 0, 0.4
	if d := Distance(a, b); math.Abs(d-0.5) > 1e-6 {
		t.Fatalf("Distance = %v, want 0.5 (squared would be 0.25)", d)
	}
}

func TestEmbeddingValid(t *testing.T) {
	var e Embedding
	if e.Valid() == nil {
		t.Error("all-zero embedding accepted")
	}
	e[3] = float32(math.NaN())
	if e.Valid() == nil {
		t.Error("NaN accepted")
	}
	e[3] = 0.1
	if err := e.Valid(); err != nil {
		t.Error(err)
	}
}

func encodePNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pngBomb is a valid PNG header claiming w x h pixels with a tiny body.
func pngBomb(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func TestInspect(t *testing.T) {
	var gifBuf bytes.Buffer
	gif.Encode(&gifBuf, image.NewPaletted(image.Rect(0, 0, 4, 4), []color.Color{color.Black}), nil)
	lim := DefaultImageLimits
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrUndecodable},
		{"text", []byte("this is not an image at all"), ErrUnsupportedFormat},
		{"gif", gifBuf.Bytes(), ErrUnsupportedFormat},
		{"too many bytes", append(encodePNG(t, 2, 2), make([]byte, lim.MaxBytes)...), ErrImageTooLarge},
		{"decompression bomb header", pngBomb(60000, 60000), ErrImageTooLarge},
		{"too many pixels", pngBomb(8000, 8000), ErrImageTooLarge},
		{"truncated header", encodePNG(t, 8, 8)[:20], ErrUndecodable},
	}
	for _, c := range cases {
		_, _, _, err := Inspect(c.data, lim)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	format, w, h, err := Inspect(encodePNG(t, 640, 480), lim)
	if err != nil || format != "png" || w != 640 || h != 480 {
		t.Errorf("valid PNG: %s %dx%d %v", format, w, h, err)
	}
}
