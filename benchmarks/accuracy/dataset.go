package accuracy

import (
	"bufio"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/loopgate/loopgate/engine"
)

// ErrDataset marks a data set whose files are missing or malformed.
var ErrDataset = errors.New("dataset")

// Image is one photo of one person. Key is its path relative to the shared
// directory: the cache key, portable between checkouts.
type Image struct {
	Key    string
	Person string
	// Index is LFW's 1-based image number (_0001 is 1); for the idols set
	// it is the order of the file within the person (1 for "bona.jpg").
	Index int
}

// LFW is Labeled Faces in the Wild, deep-funneled: people and their images
// in LFW order (by name, then by image number).
type LFW struct {
	People []string
	Images map[string][]Image
}

// lfwImagesDir is where LFW's images sit below the shared directory.
const lfwImagesDir = "datasets/lfw/images"

// LFWKey is the cache key of image n of name.
func LFWKey(name string, n int) string {
	return fmt.Sprintf("%s/%s/%s_%04d.jpg", lfwImagesDir, name, name, n)
}

// LoadLFW lists LFW's images under sharedDir and checks them against
// lfw-names.txt (name and image count per person).
func LoadLFW(sharedDir string) (*LFW, error) {
	names, err := os.Open(filepath.Join(sharedDir, "datasets/lfw/lfw-names.txt"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDataset, err)
	}
	defer names.Close()
	l := &LFW{Images: map[string][]Image{}}
	sc := bufio.NewScanner(names)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("%w: lfw-names.txt line %q", ErrDataset, sc.Text())
		}
		n, err := strconv.Atoi(f[1])
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%w: lfw-names.txt line %q", ErrDataset, sc.Text())
		}
		l.People = append(l.People, f[0])
		for i := 1; i <= n; i++ {
			l.Images[f[0]] = append(l.Images[f[0]], Image{Key: LFWKey(f[0], i), Person: f[0], Index: i})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: lfw-names.txt: %v", ErrDataset, err)
	}
	slices.Sort(l.People)
	// The listing must agree with the files: a missing image would otherwise
	// surface as an embedding error deep inside a run.
	for _, p := range l.People {
		entries, err := os.ReadDir(filepath.Join(sharedDir, lfwImagesDir, p))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrDataset, err)
		}
		if len(entries) != len(l.Images[p]) {
			return nil, fmt.Errorf("%w: %s has %d files, lfw-names.txt says %d", ErrDataset, p, len(entries), len(l.Images[p]))
		}
	}
	return l, nil
}

// NumImages counts all images.
func (l *LFW) NumImages() int {
	n := 0
	for _, imgs := range l.Images {
		n += len(imgs)
	}
	return n
}

// AllKeys lists every image key in LFW order.
func (l *LFW) AllKeys() []string {
	keys := make([]string, 0, l.NumImages())
	for _, p := range l.People {
		for _, img := range l.Images[p] {
			keys = append(keys, img.Key)
		}
	}
	return keys
}

// PeopleWithAtLeast lists, in LFW order, the people with at least n images.
func (l *LFW) PeopleWithAtLeast(n int) []string {
	var out []string
	for _, p := range l.People {
		if len(l.Images[p]) >= n {
			out = append(out, p)
		}
	}
	return out
}

// PeopleWithExactly lists, in LFW order, the people with exactly n images.
func (l *LFW) PeopleWithExactly(n int) []string {
	var out []string
	for _, p := range l.People {
		if len(l.Images[p]) == n {
			out = append(out, p)
		}
	}
	return out
}

// Pair is one View 2 comparison: two image keys and whether they show the
// same person.
type Pair struct {
	A, B string
	Same bool
}

// ParsePairs reads LFW's pairs.txt: a header "folds n", then per fold n
// matched lines "name i j" followed by n mismatched lines "name1 i name2 j".
func ParsePairs(r io.Reader) ([][]Pair, error) {
	sc := bufio.NewScanner(r)
	if !sc.Scan() {
		return nil, fmt.Errorf("%w: pairs file is empty", ErrDataset)
	}
	head := strings.Fields(sc.Text())
	if len(head) != 2 {
		return nil, fmt.Errorf("%w: pairs header %q", ErrDataset, sc.Text())
	}
	folds, err1 := strconv.Atoi(head[0])
	per, err2 := strconv.Atoi(head[1])
	if err1 != nil || err2 != nil || folds < 1 || per < 1 {
		return nil, fmt.Errorf("%w: pairs header %q", ErrDataset, sc.Text())
	}
	out := make([][]Pair, folds)
	for f := range folds {
		for i := range 2 * per {
			if !sc.Scan() {
				return nil, fmt.Errorf("%w: pairs file ends in fold %d after %d lines", ErrDataset, f+1, i)
			}
			p, err := parsePair(sc.Text(), i < per)
			if err != nil {
				return nil, err
			}
			out[f] = append(out[f], p)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: pairs: %v", ErrDataset, err)
	}
	return out, nil
}

func parsePair(line string, same bool) (Pair, error) {
	f := strings.Fields(line)
	bad := fmt.Errorf("%w: pairs line %q (want %s)", ErrDataset, line, map[bool]string{true: "name i j", false: "name1 i name2 j"}[same])
	num := func(s string) (int, bool) {
		n, err := strconv.Atoi(s)
		return n, err == nil && n > 0
	}
	if same {
		if len(f) != 3 {
			return Pair{}, bad
		}
		i, ok1 := num(f[1])
		j, ok2 := num(f[2])
		if !ok1 || !ok2 {
			return Pair{}, bad
		}
		return Pair{A: LFWKey(f[0], i), B: LFWKey(f[0], j), Same: true}, nil
	}
	if len(f) != 4 {
		return Pair{}, bad
	}
	i, ok1 := num(f[1])
	j, ok2 := num(f[3])
	if !ok1 || !ok2 {
		return Pair{}, bad
	}
	return Pair{A: LFWKey(f[0], i), B: LFWKey(f[2], j)}, nil
}

// Idols is the small East Asian set: labelled photos of single people and
// the faces of group photos, which carry no labels.
type Idols struct {
	People []string
	Images map[string][]Image
	// Group lists group photos; their faces are nobody in particular.
	Group []Image
	// Bands maps a person to the band(s) idols.json gives for that name.
	Bands map[string][]string
}

const idolsDir = "datasets/idols"

// idolGroupPhotos are group photos in the idols set, not one person.
var idolGroupPhotos = map[string]bool{"pristin.jpg": true}

var idolFileName = regexp.MustCompile(`^([a-z]+)(\d*)\.jpg$`)

// LoadIdols lists the idols images: "bona.jpg", "bona2.jpg" ... are one
// person; the person is named by the file, and idols.json supplies bands.
func LoadIdols(sharedDir string) (*Idols, error) {
	entries, err := os.ReadDir(filepath.Join(sharedDir, idolsDir, "images"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDataset, err)
	}
	raw, err := os.ReadFile(filepath.Join(sharedDir, idolsDir, "idols.json"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDataset, err)
	}
	var meta struct {
		Idols []struct{ Name, BandName string } `json:"idols"`
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, fmt.Errorf("%w: idols.json: %v", ErrDataset, err)
	}
	s := &Idols{Images: map[string][]Image{}, Bands: map[string][]string{}}
	for _, m := range meta.Idols {
		name := strings.ToLower(m.Name)
		s.Bands[name] = append(s.Bands[name], m.BandName)
	}
	for _, e := range entries {
		key := idolsDir + "/images/" + e.Name()
		if idolGroupPhotos[e.Name()] {
			s.Group = append(s.Group, Image{Key: key})
			continue
		}
		m := idolFileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("%w: idols file %q is not NAME[N].jpg", ErrDataset, e.Name())
		}
		n := 1
		if m[2] != "" {
			n, _ = strconv.Atoi(m[2])
		}
		s.Images[m[1]] = append(s.Images[m[1]], Image{Key: key, Person: m[1], Index: n})
	}
	for p, imgs := range s.Images {
		slices.SortFunc(imgs, func(a, b Image) int { return a.Index - b.Index })
		s.People = append(s.People, p)
	}
	slices.Sort(s.People)
	return s, nil
}

// AllKeys lists every idols image key, group photos last.
func (s *Idols) AllKeys() []string {
	var keys []string
	for _, p := range s.People {
		for _, img := range s.Images[p] {
			keys = append(keys, img.Key)
		}
	}
	for _, g := range s.Group {
		keys = append(keys, g.Key)
	}
	return keys
}

// LoadIdolDescriptors reads the face descriptors stored in idols.json
// (go-face's test fixtures): base64 of 128 little-endian float32 per face,
// labelled by idol. The weights that made them are not recorded there, so
// they are compared only among themselves, never with this engine's.
func LoadIdolDescriptors(sharedDir string) ([]Labelled, error) {
	raw, err := os.ReadFile(filepath.Join(sharedDir, idolsDir, "idols.json"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDataset, err)
	}
	var meta struct {
		Faces []struct {
			Descriptor string `json:"descriptor"`
			IdolID     string `json:"idol_id"`
		} `json:"faces"`
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, fmt.Errorf("%w: idols.json: %v", ErrDataset, err)
	}
	out := make([]Labelled, 0, len(meta.Faces))
	for i, f := range meta.Faces {
		b, err := base64.StdEncoding.DecodeString(f.Descriptor)
		if err != nil || len(b) != 4*engine.EmbeddingDim {
			return nil, fmt.Errorf("%w: idols.json face %d: descriptor is not 128 float32", ErrDataset, i)
		}
		var e engine.Embedding
		for j := range e {
			e[j] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*j:]))
		}
		out = append(out, Labelled{Person: f.IdolID, Emb: e})
	}
	return out, nil
}
