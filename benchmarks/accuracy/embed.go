package accuracy

import (
	"context"
	"fmt"
)

// EnrolJitter is the number of jittered copies for the jittered-enrolment
// experiment (dlib's examples use 100 for best accuracy; 10 keeps the
// enrolment cost at about ten embeddings per photo).
const EnrolJitter = 10

// Datasets are the loaded image lists.
type Datasets struct {
	LFW   *LFW
	Idols *Idols
}

// LoadDatasets lists LFW and the idols set under the shared directory.
func LoadDatasets(sharedDir string) (Datasets, error) {
	l, err := LoadLFW(sharedDir)
	if err != nil {
		return Datasets{}, err
	}
	i, err := LoadIdols(sharedDir)
	if err != nil {
		return Datasets{}, err
	}
	return Datasets{LFW: l, Idols: i}, nil
}

// enrolKeys are the images enrolled in the 1:N benchmarks: image 1 of every
// LFW person with at least two images, and of every idol with at least two.
func enrolKeys(d Datasets) []string {
	var keys []string
	for _, p := range d.LFW.PeopleWithAtLeast(2) {
		keys = append(keys, d.LFW.Images[p][0].Key)
	}
	for _, p := range d.Idols.People {
		if imgs := d.Idols.Images[p]; len(imgs) >= 2 {
			keys = append(keys, imgs[0].Key)
		}
	}
	return keys
}

// Caches are the embedding caches the benchmarks read.
type Caches struct {
	// Plain holds every LFW and idols image, embedded as the engine does.
	Plain *Cache
	// Jitter holds the enrolment images embedded with EnrolJitter copies;
	// nil when not requested.
	Jitter *Cache
	// Stats of the embedding done in this run (zero when all was cached).
	PlainStats, JitterStats FillStats
}

// EmbedAll fills the plain cache with every image of both data sets and,
// when withJitter is set, the jitter cache with the enrolment images.
func EmbedAll(ctx context.Context, env *Env, d Datasets, withJitter bool) (Caches, error) {
	var cs Caches
	keys := append(d.LFW.AllKeys(), d.Idols.AllKeys()...)
	var err error
	cs.Plain, cs.PlainStats, err = env.Embeddings(ctx, keys, 0, "embedding LFW+idols")
	if err != nil {
		return cs, fmt.Errorf("plain embeddings: %w", err)
	}
	if withJitter {
		cs.Jitter, cs.JitterStats, err = env.Embeddings(ctx, enrolKeys(d), EnrolJitter, fmt.Sprintf("embedding enrolment images, jitter %d", EnrolJitter))
		if err != nil {
			return cs, fmt.Errorf("jittered embeddings: %w", err)
		}
	}
	return cs, nil
}
