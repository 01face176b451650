package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/enroll"
)

// The demo enrols a few people from the shared data set and identifies
// probes whose ground truth comes from the data set's own labels (folder
// and file names). It prints each result against that truth.

type demoPerson struct {
	id, name string
	photos   []string
	// oneOf enrols only the first acceptable photo; the rest become probes.
	oneOf bool
}

type demoProbe struct {
	path   string
	expect []string // external IDs expected among the faces; empty = nobody enrolled
	note   string
}

func runDemoStills(ctx context.Context, cfg Config, args []string) error {
	fs := flag.NewFlagSet("demo stills", flag.ContinueOnError)
	shared := fs.String("shared", cfg.SharedDir, "the shared data directory")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	people, probes, err := demoData(*shared)
	if err != nil {
		return err
	}
	a, err := openApp(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	fmt.Printf("loopgate demo: models loaded in %s, database opened and migrated in %s\n", ms(a.loadModels), ms(a.openDB))
	for _, in := range a.recognizer.Models() {
		fmt.Printf("  model %-42s %s\n", in.Model.Name, in.Variant.Label)
	}
	fmt.Printf("  embedding model tag %s, match threshold %.2f (Euclidean)\n\n", a.recognizer.ModelTag(), cfg.Threshold)

	fmt.Printf("== enrol %d people ==\n", len(people))
	var enrolTimes []time.Duration
	for _, p := range people {
		photos := p.photos
		if p.oneOf {
			photos = photos[:1]
		}
		for len(photos) > 0 {
			res, err := enrolDemoPerson(ctx, a, p, photos)
			for _, ph := range res.Photos {
				enrolTimes = append(enrolTimes, ph.Elapsed)
			}
			var rej *enroll.RejectedError
			switch {
			case errors.As(err, &rej):
				fmt.Printf("  %-28s REJECTED %v\n", p.id, err)
				if !p.oneOf || len(photos) == len(p.photos) {
					photos = nil
					continue
				}
				// Try the person's next photo; the rejected one is not probed.
				i := slices.Index(p.photos, photos[0])
				p.photos = slices.Delete(slices.Clone(p.photos), i, i+1)
				photos = p.photos[i : i+1]
				continue
			case err != nil:
				return err
			}
			fmt.Printf("  %-28s %-26q %d photo(s): %d added, %d already enrolled (%s/photo)\n", p.id, p.name,
				len(photos), res.Stored.Added, res.Stored.AlreadyEnrolled, ms(meanDuration(res.Photos)))
			if p.oneOf {
				for _, probe := range p.photos {
					if probe != photos[0] {
						probes = append(probes, demoProbe{path: probe, expect: []string{p.id}})
					}
				}
			}
			break
		}
	}
	st, err := a.gallery.Stats(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("  gallery: %d people, %d templates\n\n", st.People, st.Templates)

	fmt.Printf("== identify %d probes ==\n", len(probes))
	var timings []engine.Timings
	correct := 0
	for _, pr := range probes {
		data, err := readBounded(pr.path, int64(engine.DefaultImageLimits.MaxBytes))
		if err != nil {
			return err
		}
		ids, t, err := a.identifier.IdentifyImage(ctx, data)
		rel, _ := filepath.Rel(*shared, pr.path)
		if err != nil {
			fmt.Printf("  %-58s error: %v\n", rel, err)
			continue
		}
		timings = append(timings, t)
		var got []string
		var parts []string
		for _, r := range ids {
			if r.Matched {
				got = append(got, r.Best.ExternalID)
				parts = append(parts, fmt.Sprintf("%s (%.3f)", r.Best.ExternalID, r.Best.Distance))
			} else if r.Best != nil {
				parts = append(parts, fmt.Sprintf("no match (nearest %.3f)", r.Best.Distance))
			} else {
				parts = append(parts, "no match")
			}
		}
		ok := sameSet(got, pr.expect)
		mark := "✓"
		if ok {
			correct++
		} else {
			mark = "✗ " + errorKinds(got, pr.expect)
		}
		want := "nobody enrolled"
		if len(pr.expect) > 0 {
			want = strings.Join(pr.expect, "+")
		}
		fmt.Printf("  %-58s %-44s want %-26s %9s  %s\n", rel, strings.Join(parts, ", "), want, ms(t.Total()), mark)
	}
	fmt.Printf("\n%d/%d probes correct\n", correct, len(probes))
	fmt.Printf("enrolment: %d photos, median %s per photo (decode+detect+embed)\n", len(enrolTimes), ms(median(enrolTimes)))
	fmt.Printf("identify per probe image (median / max over %d):\n", len(timings))
	for _, s := range []struct {
		name string
		get  func(engine.Timings) time.Duration
	}{
		{"decode", func(t engine.Timings) time.Duration { return t.Decode }},
		{"detect+embed", func(t engine.Timings) time.Duration { return t.DetectEmbed }},
		{"search", func(t engine.Timings) time.Duration { return t.Search }},
		{"total", engine.Timings.Total},
	} {
		var ds []time.Duration
		for _, t := range timings {
			ds = append(ds, s.get(t))
		}
		fmt.Printf("  %-13s %9s / %9s\n", s.name, ms(median(ds)), ms(slices.Max(ds)))
	}
	if correct != len(probes) {
		fmt.Printf("\n%d probe image(s) not identified as their labels say: see the ✗ lines above. These are real\n"+
			"errors of the model at threshold %.2f, not demo faults; the benchmarks calibrate the threshold.\n", len(probes)-correct, cfg.Threshold)
	}
	return nil
}

// demoData picks the demo's people and probes from the shared folder.
func demoData(shared string) ([]demoPerson, []demoProbe, error) {
	if _, err := os.Stat(filepath.Join(shared, "datasets", "lfw", "images")); err != nil {
		return nil, nil, fmt.Errorf("shared data set not found at %s (set LOOPGATE_SHARED_DIR): %w", shared, err)
	}
	var people []demoPerson
	var probes []demoProbe

	// media/knn: five people with enrolment photos and labelled test photos.
	knn := filepath.Join(shared, "media", "knn")
	dirs, err := os.ReadDir(filepath.Join(knn, "train"))
	if err != nil {
		return nil, nil, err
	}
	for _, d := range dirs {
		photos, _ := filepath.Glob(filepath.Join(knn, "train", d.Name(), "*"))
		people = append(people, demoPerson{id: "knn-" + d.Name(), name: titleName(d.Name(), "_"), photos: photos})
	}
	for _, p := range []demoProbe{
		{path: "alex_lacamoire1.jpg", expect: []string{"knn-alex_lacamoire"}},
		{path: "johnsnow_test1.jpg", expect: []string{"knn-kit_harington"}},
		{path: "obama1.jpg", expect: []string{"knn-obama"}},
		{path: "kit_with_rose.jpg", expect: []string{"knn-kit_harington", "knn-rose_leslie"}},
		{path: "obama_and_biden.jpg", expect: []string{"knn-obama", "knn-biden"}},
	} {
		p.path = filepath.Join(knn, "test", p.path)
		probes = append(probes, p)
	}

	// LFW deep-funneled: enrol image 1, probe images 2 and 3.
	lfw := filepath.Join(shared, "datasets", "lfw", "images")
	for _, n := range []string{"Junichiro_Koizumi", "Roh_Moo-hyun", "Hu_Jintao", "Megawati_Sukarnoputri", "Colin_Powell"} {
		id := "lfw-" + n
		people = append(people, demoPerson{id: id, name: titleName(n, "_"), photos: []string{lfwImage(lfw, n, 1)}})
		probes = append(probes, demoProbe{path: lfwImage(lfw, n, 2), expect: []string{id}}, demoProbe{path: lfwImage(lfw, n, 3), expect: []string{id}})
	}
	// LFW people with a single image are never enrolled: impostor probes.
	singles, err := lfwSingles(filepath.Join(shared, "datasets", "lfw", "lfw-names.txt"))
	if err != nil {
		return nil, nil, err
	}
	for i := 0; i < len(singles) && i < 8*500; i += 500 {
		probes = append(probes, demoProbe{path: lfwImage(lfw, singles[i], 1)})
	}

	// East Asian faces (idols): enrol the first photo the enroller accepts,
	// probe with the person's other photos (see runDemo).
	idols := filepath.Join(shared, "datasets", "idols", "images")
	for _, n := range []string{"bona", "chaeyeon", "eunseo", "jimin", "luda", "tzuyu", "chaeyoung"} {
		photos, _ := filepath.Glob(filepath.Join(idols, n+"*.jpg"))
		people = append(people, demoPerson{id: "idol-" + n, name: titleName(n, "_"), photos: photos, oneOf: true})
	}
	return people, probes, nil
}

func lfwImage(dir, name string, n int) string {
	return filepath.Join(dir, name, fmt.Sprintf("%s_%04d.jpg", name, n))
}

func lfwSingles(namesFile string) ([]string, error) {
	f, err := os.Open(namesFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 2 && fields[1] == "1" {
			out = append(out, fields[0])
		}
	}
	return out, sc.Err()
}

func enrolDemoPerson(ctx context.Context, a *app, p demoPerson, photos []string) (enroll.Result, error) {
	req := enroll.Request{ExternalID: p.id, Name: p.name, Source: "demo", Operator: "demo"}
	for _, path := range photos {
		data, err := readBounded(path, int64(engine.DefaultImageLimits.MaxBytes))
		if err != nil {
			return enroll.Result{}, err
		}
		req.Photos = append(req.Photos, enroll.Photo{Name: path, Data: data})
	}
	return a.enroller.Enrol(ctx, req)
}

// errorKinds names what went wrong: a matched ID that is not in the image
// (false match) or an enrolled person in the image who was not matched (miss).
func errorKinds(got, want []string) string {
	var kinds []string
	for _, g := range got {
		if !slices.Contains(want, g) {
			kinds = append(kinds, "false match "+g)
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			kinds = append(kinds, "missed "+w)
		}
	}
	return strings.Join(kinds, ", ")
}

func titleName(s, sep string) string {
	parts := strings.Split(s, sep)
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, " ")
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

func meanDuration(ps []enroll.PhotoResult) time.Duration {
	if len(ps) == 0 {
		return 0
	}
	var sum time.Duration
	for _, p := range ps {
		sum += p.Elapsed
	}
	return sum / time.Duration(len(ps))
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
