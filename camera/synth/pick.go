package synth

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// PickWalkers chooses walkers from LFW deep-funneled, deterministically for
// a seed. lfwDir is the LFW root (holding images/ and lfw-names.txt) or its
// images/ directory. Enrolled walkers are people with at least two photos:
// enrolled with _0001 and walking with _0002. Strangers are people with
// exactly one photo, so no other photo of them can be enrolled by mistake.
// The two groups are shuffled together in a seeded order, lanes unset.
func PickWalkers(lfwDir string, enrolled, strangers int, seed int64) ([]Walker, error) {
	return PickWalkersWith(lfwDir, enrolled, strangers, seed, nil)
}

// PickWalkersWith is PickWalkers with a check on every candidate (for
// example Vetter.Check): a candidate for which accept returns an error
// wrapping ErrRejected is passed over for the next one in the seeded order;
// any other error stops the pick.
func PickWalkersWith(lfwDir string, enrolled, strangers int, seed int64, accept func(Walker) error) ([]Walker, error) {
	if enrolled < 0 || strangers < 0 || enrolled+strangers == 0 {
		return nil, fmt.Errorf("%w: want at least one walker, got %d enrolled and %d strangers", ErrWalkers, enrolled, strangers)
	}
	images := filepath.Join(lfwDir, "images")
	if _, err := os.Stat(images); err != nil {
		images = lfwDir
	}
	counts, err := lfwCounts(images)
	if err != nil {
		return nil, err
	}
	var multi, single []string
	for name, n := range counts {
		switch {
		case n >= 2:
			multi = append(multi, name)
		case n == 1:
			single = append(single, name)
		}
	}
	if len(multi) < enrolled || len(single) < strangers {
		return nil, fmt.Errorf("%w in %s: want %d with two or more photos and %d with one, have %d and %d",
			ErrNotEnoughPeople, images, enrolled, strangers, len(multi), len(single))
	}
	slices.Sort(multi)
	slices.Sort(single)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x1f3a))
	rng.Shuffle(len(multi), func(i, j int) { multi[i], multi[j] = multi[j], multi[i] })
	rng.Shuffle(len(single), func(i, j int) { single[i], single[j] = single[j], single[i] })

	photo := func(name string, n int) string {
		return filepath.Join(images, name, fmt.Sprintf("%s_%04d.jpg", name, n))
	}
	take := func(pool []string, want int, mk func(string) Walker) ([]Walker, error) {
		var got []Walker
		for _, name := range pool {
			if len(got) == want {
				break
			}
			w := mk(name)
			for _, p := range []string{w.EnrolPhoto, w.WalkPhoto} {
				if p == "" {
					continue
				}
				if _, err := os.Stat(p); err != nil {
					return nil, fmt.Errorf("%w: %v", ErrNotEnoughPeople, err)
				}
			}
			if accept != nil {
				if err := accept(w); errors.Is(err, ErrRejected) {
					continue
				} else if err != nil {
					return nil, err
				}
			}
			got = append(got, w)
		}
		if len(got) < want {
			return nil, fmt.Errorf("%w in %s: only %d of %d candidates passed the check", ErrNotEnoughPeople, images, len(got), want)
		}
		return got, nil
	}
	in, err := take(multi, enrolled, func(name string) Walker {
		return Walker{Name: name, EnrolPhoto: photo(name, 1), WalkPhoto: photo(name, 2), Enrolled: true}
	})
	if err != nil {
		return nil, err
	}
	out, err := take(single, strangers, func(name string) Walker {
		return Walker{Name: name, WalkPhoto: photo(name, 1)}
	})
	if err != nil {
		return nil, err
	}
	out = append(in, out...)
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out, nil
}

// lfwCounts returns photos per person: from lfw-names.txt beside images/
// when present ("Name<TAB>count" per line), else by listing the folders.
func lfwCounts(images string) (map[string]int, error) {
	counts := map[string]int{}
	if f, err := os.Open(filepath.Join(filepath.Dir(images), "lfw-names.txt")); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) != 2 {
				continue
			}
			n, err := strconv.Atoi(fields[1])
			if err != nil {
				continue
			}
			counts[fields[0]] = n
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("synth: read lfw-names.txt: %w", err)
		}
		if len(counts) > 0 {
			return counts, nil
		}
	}
	people, err := os.ReadDir(images)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotEnoughPeople, err)
	}
	for _, p := range people {
		if !p.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(images, p.Name()))
		if err != nil {
			return nil, fmt.Errorf("synth: %w", err)
		}
		n := 0
		for _, f := range files {
			if strings.HasSuffix(f.Name(), ".jpg") {
				n++
			}
		}
		counts[p.Name()] = n
	}
	return counts, nil
}
