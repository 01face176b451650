package localgallery

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/loopgate/loopgate/engine"
)

// The snapshot file: magic line, sha256 of the payload, gob payload. The
// freshness side file (path + ".fresh") is rewritten every few seconds
// between snapshots, which are rewritten only after changes: a node
// restarted during an outage then knows how fresh its copy really was.
const snapshotMagic = "loopgate gallery copy v1\n"

const (
	// snapshotMinInterval spaces snapshot rewrites during a burst of
	// enrolments.
	snapshotMinInterval = 2 * time.Second
	// freshnessEvery is how often the side file records freshness.
	freshnessEvery = 5 * time.Second
)

type snapshotFile struct {
	// ID is random per file; the side file names the snapshot it speaks for.
	ID        uint64
	Scope     []string
	Model     string
	FreshAsOf time.Time
	MaxSeq    int64
	People    []snapshotPerson
}

type snapshotPerson struct {
	ID                    int64
	ExternalID, Name      string
	Status, RevokedReason string
	RevokedAt             *time.Time
	ValidFrom, ValidUntil *time.Time
	Gates                 []string
	// Templates are float32 little-endian, EmbeddingDim per template.
	Templates []byte
}

type freshnessFile struct {
	ID        uint64    `json:"snapshot_id"`
	FreshAsOf time.Time `json:"fresh_as_of"`
}

func freshnessPath(path string) string { return path + ".fresh" }

// writeSnapshot saves s atomically and returns the new file's id.
func writeSnapshot(path string, s *state, scope []string, model string, fresh time.Time) (uint64, error) {
	var idb [8]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return 0, err
	}
	f := snapshotFile{ID: binary.LittleEndian.Uint64(idb[:]), Scope: scope, Model: model, FreshAsOf: fresh, MaxSeq: s.maxSeq,
		People: make([]snapshotPerson, len(s.people))}
	for i, p := range s.people {
		t := make([]byte, 4*len(p.emb))
		for j, v := range p.emb {
			binary.LittleEndian.PutUint32(t[4*j:], math.Float32bits(v))
		}
		f.People[i] = snapshotPerson{ID: p.id, ExternalID: p.externalID, Name: p.name, Status: p.reg.Status,
			RevokedReason: p.reg.RevokedReason, RevokedAt: p.reg.RevokedAt, ValidFrom: p.reg.ValidFrom,
			ValidUntil: p.reg.ValidUntil, Gates: p.gates, Templates: t}
	}
	var payload bytes.Buffer
	if err := gob.NewEncoder(&payload).Encode(&f); err != nil {
		return 0, fmt.Errorf("localgallery: encode snapshot: %w", err)
	}
	sum := sha256.Sum256(payload.Bytes())
	err := writeFileAtomic(path, func(w io.Writer) error {
		if _, err := io.WriteString(w, snapshotMagic); err != nil {
			return err
		}
		if _, err := w.Write(sum[:]); err != nil {
			return err
		}
		_, err := w.Write(payload.Bytes())
		return err
	})
	if err != nil {
		return 0, err
	}
	// A side file of the previous snapshot no longer applies.
	if err := os.Remove(freshnessPath(path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return f.ID, fmt.Errorf("localgallery: remove old freshness file: %w", err)
	}
	return f.ID, nil
}

func writeFreshness(path string, id uint64, fresh time.Time) error {
	b, err := json.Marshal(freshnessFile{ID: id, FreshAsOf: fresh})
	if err != nil {
		return err
	}
	return writeFileAtomic(freshnessPath(path), func(w io.Writer) error { _, err := w.Write(b); return err })
}

// readSnapshot reads and verifies the snapshot file; its FreshAsOf is the
// side file's when that one speaks for it and is newer.
func readSnapshot(path string) (snapshotFile, error) {
	var f snapshotFile
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return f, fmt.Errorf("%w: %s", errNoSnapshot, path)
	}
	if err != nil {
		return f, fmt.Errorf("localgallery: read snapshot: %w", err)
	}
	rest, ok := bytes.CutPrefix(raw, []byte(snapshotMagic))
	if !ok || len(rest) < sha256.Size {
		return f, fmt.Errorf("localgallery: %s is not a gallery snapshot", path)
	}
	sum, payload := rest[:sha256.Size], rest[sha256.Size:]
	if got := sha256.Sum256(payload); !bytes.Equal(got[:], sum) {
		return f, fmt.Errorf("localgallery: snapshot %s is corrupt (checksum mismatch)", path)
	}
	if err := gob.NewDecoder(bytes.NewReader(payload)).Decode(&f); err != nil {
		return f, fmt.Errorf("localgallery: decode snapshot %s: %w", path, err)
	}
	for _, p := range f.People {
		if len(p.Templates)%(4*engine.EmbeddingDim) != 0 {
			return f, fmt.Errorf("localgallery: snapshot %s: person %d has a partial template", path, p.ID)
		}
	}
	if b, err := os.ReadFile(freshnessPath(path)); err == nil {
		var ff freshnessFile
		if json.Unmarshal(b, &ff) == nil && ff.ID == f.ID && ff.FreshAsOf.After(f.FreshAsOf) {
			f.FreshAsOf = ff.FreshAsOf
		}
	}
	return f, nil
}

// state rebuilds the copy's state from the file.
func (f snapshotFile) state() *state {
	people := make([]*person, len(f.People))
	for i, sp := range f.People {
		emb := make([]float32, len(sp.Templates)/4)
		for j := range emb {
			emb[j] = math.Float32frombits(binary.LittleEndian.Uint32(sp.Templates[4*j:]))
		}
		people[i] = &person{id: sp.ID, externalID: sp.ExternalID, name: sp.Name, gates: sp.Gates, emb: emb,
			reg: engine.Registration{Status: sp.Status, RevokedReason: sp.RevokedReason, RevokedAt: sp.RevokedAt,
				ValidFrom: sp.ValidFrom, ValidUntil: sp.ValidUntil}}
	}
	return newState(people, f.MaxSeq, 1)
}

// writeFileAtomic writes a 0600 file next to path, syncs it and renames it
// over path, so a crash leaves the old file or the new one, never a torn one.
func writeFileAtomic(path string, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("localgallery: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("localgallery: %w", err)
	}
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err := write(bw); err != nil {
		return fmt.Errorf("localgallery: write %s: %w", tmp.Name(), err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("localgallery: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("localgallery: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("localgallery: close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("localgallery: %w", err)
	}
	// The rename is durable once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// SaveSnapshot writes the copy to its snapshot file now (the background
// loop does this after changes; tools and tests may call it).
func (c *Copy) SaveSnapshot() error {
	if c.cfg.SnapshotPath == "" {
		return errors.New("localgallery: no snapshot path configured")
	}
	fresh := c.FreshAsOf() // before the state: the state is at least this fresh
	s := c.cur.Load()
	if s == nil {
		return errors.New("localgallery: nothing to save")
	}
	_, err := writeSnapshot(c.cfg.SnapshotPath, s, c.cfg.Scope, c.cfg.Model, fresh)
	return err
}

// persist saves the copy after changes (at most every snapshotMinInterval)
// and its freshness every freshnessEvery, and once more when ctx ends. A
// copy that came from the snapshot itself is not written back.
func (c *Copy) persist(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var (
		savedGen             uint64
		savedID              uint64
		savedFresh           time.Time
		lastWrite, lastFresh time.Time
		failing              bool
	)
	save := func(final bool) {
		if c.source.Load() != "database" {
			return
		}
		fresh := c.FreshAsOf()
		s := c.cur.Load()
		now := time.Now()
		var err error
		switch {
		case s.gen != savedGen:
			if !final && now.Sub(lastWrite) < snapshotMinInterval {
				return
			}
			var id uint64
			if id, err = writeSnapshot(c.cfg.SnapshotPath, s, c.cfg.Scope, c.cfg.Model, fresh); err == nil {
				savedGen, savedID, savedFresh, lastWrite, lastFresh = s.gen, id, fresh, now, now
			}
		case fresh.After(savedFresh) && (final || now.Sub(lastFresh) >= freshnessEvery):
			if err = writeFreshness(c.cfg.SnapshotPath, savedID, fresh); err == nil {
				savedFresh, lastFresh = fresh, now
			}
		}
		if (err != nil) != failing {
			failing = err != nil
			if failing {
				c.log.Error("gallery snapshot not saved: a restart during an outage would start from an older copy", "err", err)
			} else {
				c.log.Info("gallery snapshot saved again", "path", c.cfg.SnapshotPath)
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			save(true)
			return
		case <-t.C:
			save(false)
		}
	}
}
