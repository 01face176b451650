package models

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrMissing is wrapped by errors about a model file that is not in the directory.
var ErrMissing = errors.New("model file missing")

// MismatchError says a model file's content is none of the accepted variants.
type MismatchError struct {
	Path   string
	Got    string
	Wanted []string // "label sha256" of each accepted variant
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("model file %s has sha256 %s, which is none of the accepted variants (%s); "+
		"delete it and run `loopgate models fetch`", e.Path, e.Got, strings.Join(e.Wanted, "; "))
}

// Installed describes a verified model file.
type Installed struct {
	Model   Model
	Variant Variant
	Path    string
	SHA256  string
	// Pinned is true when the digest was not known to the manifest and was
	// recorded when the file was fetched from its MD5-verified archive.
	Pinned bool
}

// origin is the sidecar written next to each fetched file, recording which
// variant it is and where it came from.
type origin struct {
	Variant   string    `json:"variant"`
	SHA256    string    `json:"sha256"`
	Source    string    `json:"source"`
	FetchedAt time.Time `json:"fetched_at"`
}

func originPath(dir, name string) string { return filepath.Join(dir, "."+name+".origin.json") }

func readOrigin(dir, name string) (origin, bool) {
	b, err := os.ReadFile(originPath(dir, name))
	if err != nil {
		return origin{}, false
	}
	var o origin
	if json.Unmarshal(b, &o) != nil {
		return origin{}, false
	}
	return o, true
}

func writeOrigin(dir, name string, o origin) error {
	b, err := json.MarshalIndent(o, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(originPath(dir, name), append(b, '\n'), 0o644)
}

// Verify checks every manifest file in dir and returns what is installed.
// It refuses a missing file or one whose digest matches no accepted variant.
func Verify(dir string) ([]Installed, error) { return VerifyManifest(dir, Manifest) }

// VerifyManifest is Verify against another manifest (tests use small ones).
func VerifyManifest(dir string, manifest []Model) ([]Installed, error) {
	var out []Installed
	var errs []error
	for _, m := range manifest {
		in, err := VerifyOne(dir, m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, in)
	}
	return out, errors.Join(errs...)
}

// VerifyOne checks one model file in dir.
func VerifyOne(dir string, m Model) (Installed, error) {
	path := filepath.Join(dir, m.Name)
	digest, err := fileSHA256(path)
	if errors.Is(err, os.ErrNotExist) {
		return Installed{}, fmt.Errorf("%w: %s (run `loopgate models fetch`)", ErrMissing, path)
	}
	if err != nil {
		return Installed{}, fmt.Errorf("models: read %s: %w", path, err)
	}
	return identify(dir, m, path, digest)
}

func identify(dir string, m Model, path, digest string) (Installed, error) {
	for _, v := range m.Variants {
		if v.SHA256 != "" && v.SHA256 == digest {
			return Installed{Model: m, Variant: v, Path: path, SHA256: digest}, nil
		}
	}
	// A variant without a known digest is accepted only as pinned at fetch time.
	if o, ok := readOrigin(dir, m.Name); ok && o.SHA256 == digest {
		if v, ok := m.variant(o.Variant); ok && v.SHA256 == "" {
			return Installed{Model: m, Variant: v, Path: path, SHA256: digest, Pinned: true}, nil
		}
	}
	var wanted []string
	for _, v := range m.Variants {
		if v.SHA256 != "" {
			wanted = append(wanted, v.Label+" "+v.SHA256)
		} else {
			wanted = append(wanted, v.Label+" (pinned when fetched from its archive, md5 "+v.ArchiveMD5+")")
		}
	}
	return Installed{}, &MismatchError{Path: path, Got: digest, Wanted: wanted}
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
