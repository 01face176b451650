package accuracy

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/loopgate/loopgate/internal/testenv"
)

func TestLoadLFWCounts(t *testing.T) {
	l, err := LoadLFW(testenv.SharedDir(t))
	if err != nil {
		t.Fatal(err)
	}
	// The figures every LFW 1:N protocol quotes.
	if len(l.People) != 5749 || l.NumImages() != 13233 || len(l.PeopleWithAtLeast(2)) != 1680 || len(l.PeopleWithExactly(1)) != 4069 {
		t.Fatalf("people %d images %d with>=2 %d singles %d", len(l.People), l.NumImages(), len(l.PeopleWithAtLeast(2)), len(l.PeopleWithExactly(1)))
	}
	f, err := os.Open(filepath.Join(testenv.SharedDir(t), "datasets/lfw/pairs.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	folds, err := ParsePairs(f)
	if err != nil {
		t.Fatal(err)
	}
	same := 0
	for _, fold := range folds {
		for _, p := range fold {
			if p.Same {
				same++
			}
			for _, k := range []string{p.A, p.B} {
				if _, err := os.Stat(filepath.Join(testenv.SharedDir(t), k)); err != nil {
					t.Fatalf("pair image missing: %v", err)
				}
			}
		}
	}
	if len(folds) != 10 || same != 3000 {
		t.Fatalf("%d folds, %d matched pairs; want 10 and 3000", len(folds), same)
	}
}

func TestLoadIdols(t *testing.T) {
	s, err := LoadIdols(testenv.SharedDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Group) != 1 || len(s.Images["jimin"]) != 7 || s.Images["bona"][0].Key != "datasets/idols/images/bona.jpg" {
		t.Fatalf("group %d, jimin %d, bona first %+v", len(s.Group), len(s.Images["jimin"]), s.Images["bona"][0])
	}
	desc, err := LoadIdolDescriptors(testenv.SharedDir(t))
	if err != nil {
		t.Fatal(err)
	}
	var norm float64
	for _, v := range desc[0].Emb {
		norm += float64(v) * float64(v)
	}
	// dlib descriptors are not unit vectors; a wrong byte order would give nonsense.
	if len(desc) < 1000 || math.Sqrt(norm) < 1 || math.Sqrt(norm) > 2 {
		t.Fatalf("%d descriptors, first norm %v", len(desc), math.Sqrt(norm))
	}
}
