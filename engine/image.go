package engine

import (
	"bytes"
	"fmt"
	"image"
	_ "image/gif" // recognised only to name it in the rejection
	_ "image/jpeg"
	_ "image/png"

	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/webp"
)

// ImageLimits bound what the decoder accepts, checked before any pixel is
// decoded so a hostile file cannot make OpenCV allocate gigabytes.
type ImageLimits struct {
	MaxBytes  int // encoded size
	MaxWidth  int
	MaxHeight int
	MaxPixels int
	// MaxSide is the longest side of the normalised JPEG (Decoder.Decode):
	// larger images are downscaled, bounding go-face's whole-image detector
	// time (dlib's CNN costs about a second per megapixel on one core). The
	// still path (engine/still) keeps full resolution up to the limits
	// above: its detector downsizes its own copy, and crops need every pixel.
	MaxSide int
}

// DefaultImageLimits admit a 12 MP phone photo or a 4K camera frame.
var DefaultImageLimits = ImageLimits{
	MaxBytes:  15 << 20,
	MaxWidth:  8192,
	MaxHeight: 8192,
	MaxPixels: 40_000_000,
	MaxSide:   1024,
}

// SupportedFormats are the encodings loopgate decodes (through OpenCV).
var SupportedFormats = []string{"jpeg", "png", "webp", "bmp"}

// Image is a decoded, normalised picture: a 3-channel baseline JPEG, the
// only form go-face reads, with EXIF orientation already applied.
type Image struct {
	JPEG          []byte
	Width, Height int
	// Scale is normalised size / source size (1 when not downscaled); face
	// boxes are in normalised pixels.
	Scale float64
	// Format is the source encoding ("jpeg", "png", ...).
	Format string
}

// Decoder turns untrusted image bytes into an Image.
type Decoder interface {
	Decode(data []byte) (Image, error)
}

// Inspect checks encoded bytes against the limits using only the header,
// and returns the format and dimensions. It does not decode pixels.
func Inspect(data []byte, lim ImageLimits) (format string, width, height int, err error) {
	if len(data) == 0 {
		return "", 0, 0, fmt.Errorf("%w: empty file", ErrUndecodable)
	}
	if lim.MaxBytes > 0 && len(data) > lim.MaxBytes {
		return "", 0, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrImageTooLarge, len(data), lim.MaxBytes)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err == image.ErrFormat {
		return "", 0, 0, fmt.Errorf("%w: not a %v file", ErrUnsupportedFormat, SupportedFormats)
	}
	if err != nil {
		return format, 0, 0, fmt.Errorf("%w: %s header: %v", ErrUndecodable, format, err)
	}
	supported := false
	for _, f := range SupportedFormats {
		supported = supported || f == format
	}
	if !supported {
		return format, 0, 0, fmt.Errorf("%w: %s (accepted: %v)", ErrUnsupportedFormat, format, SupportedFormats)
	}
	w, h := cfg.Width, cfg.Height
	if w <= 0 || h <= 0 {
		return format, w, h, fmt.Errorf("%w: %s says %dx%d pixels", ErrUndecodable, format, w, h)
	}
	if (lim.MaxWidth > 0 && w > lim.MaxWidth) || (lim.MaxHeight > 0 && h > lim.MaxHeight) ||
		(lim.MaxPixels > 0 && w*h > lim.MaxPixels) {
		return format, w, h, fmt.Errorf("%w: %dx%d pixels, limit %dx%d and %d pixels",
			ErrImageTooLarge, w, h, lim.MaxWidth, lim.MaxHeight, lim.MaxPixels)
	}
	return format, w, h, nil
}
