package sink

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The spool is an append-only log of events on local disk, in segment files
// read and deleted oldest first. Its files (integers big-endian):
//
//	seg-<20-digit seq>.log  "LGSPOOL1", then records:
//	                        uint32 payload length, uint32 CRC-32C of
//	                        (length bytes ‖ payload), payload (event JSON)
//	ack                     "LGACK001", uint64 segment seq, uint64 offset,
//	                        uint32 CRC-32C of the 24 bytes before it
//	lock                    flock'ed while a process uses the spool
//
// Why segments rather than one file per event: one fsync per Send instead of
// two (file and directory), one disk block per few thousand events instead
// of one per event, and deletion a segment at a time (a segment is sealed at
// segBytes, or at deliveredKeepBytes once everything in it is delivered).
//
// Crash safety rests on three rules. (1) An append is fsynced before it
// counts, so a record exists once append returns. (2) Only the newest
// segment of the running process is ever appended to: each start, and each
// failed write, begins a new segment, so a record torn by a crash or a full
// disk can only be the last one in its segment; it is skipped with a log
// line and the segment still yields every record before it. (3) The ack
// file only ever names a position whose records were all delivered. It is
// written every ackEvery deliveries and when idle, without fsync: a stale or
// lost ack only makes the next start deliver some records again, and the
// audit INSERT ignores an event_id it already has.

// ErrSpoolFull means the spool holds SpoolMaxBytes already.
var ErrSpoolFull = errors.New("sink: spool full")

// ErrSpoolLocked means another process (or sink) uses the spool directory.
var ErrSpoolLocked = errors.New("sink: spool directory in use")

var errSpoolClosed = errors.New("sink: spool closed")

// errDamaged marks a record that is torn (cut short) or corrupt.
var errDamaged = errors.New("torn or damaged record")

const (
	spoolMagic     = "LGSPOOL1"
	ackMagic       = "LGACK001"
	segHeaderLen   = int64(len(spoolMagic))
	frameHeaderLen = 8
	ackLen         = len(ackMagic) + 8 + 8 + 4
	// maxRecordBytes is far above any event; a larger length is damage.
	maxRecordBytes = 16 << 20
	// ackEvery bounds how many delivered records a crash can make the next
	// start send again (besides those since the reader last went idle).
	ackEvery = 64

	ackFileName  = "ack"
	ackTempName  = "ack.tmp"
	lockFileName = "lock"
	segPrefix    = "seg-"
	segSuffix    = ".log"

	// deliveredKeepBytes bounds the delivered records kept on disk in a
	// segment still being written: once the reader has caught up with it
	// and it is this big, it is closed and deleted. Decisions carry names;
	// the spool is no second archive. Bigger than an event, so a new
	// segment (and its directory fsync) is rare.
	deliveredKeepBytes = 64 << 10

	minSpoolBytes = 16 << 10
	minSegBytes   = 4 << 10
	maxSegBytes   = 8 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type spoolSegment struct {
	seq     uint64
	size    int64 // bytes on disk
	end     int64 // the records before end are whole (written and synced here, or checked)
	records int   // records before end not yet acknowledged
	sealed  bool  // never appended to again; deleted once read to end
}

type ackPos struct{ seq, off uint64 }

// spool is safe for one writer and one reader at a time (Send is
// serialised by its caller, the reader is the sink's goroutine); one mutex
// guards everything, so close can race a stuck reader safely.
type spool struct {
	dir      string
	name     string // sink name, for metrics and logs
	maxBytes int64
	segBytes int64
	m        *Metrics
	log      *slog.Logger

	mu      sync.Mutex
	closed  bool
	lock    *os.File
	segs    []*spoolSegment // oldest first
	w       *os.File        // appends to the last segment; nil: the next append starts one
	wbuf    []byte
	nextSeq uint64
	bytes   int64 // all segment files
	pending int   // records appended (or recovered) and not yet acknowledged

	r        *os.File // reads segs[0]
	rSeq     uint64   // the segment rPos belongs to
	rPos     int64    // the next record to deliver
	rNext    int64    // the end of the record next returned; 0 when none is out
	rbuf     []byte
	acked    int // acknowledgements since the last checkpoint
	saved    ackPos
	ackFails bool // the last checkpoint failed (logged once)
}

// openSpool opens (creating it 0700) the spool in dir, locks it, and takes
// stock of what a previous run left there.
func openSpool(dir string, maxBytes int64, name string, m *Metrics, log *slog.Logger) (*spool, error) {
	if maxBytes < minSpoolBytes {
		return nil, fmt.Errorf("sink: spool max bytes %d below the minimum %d", maxBytes, minSpoolBytes)
	}
	if err := ensurePrivateDir(dir, log); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sink: spool lock: %w", err)
	}
	if err := lockFile(lock); err != nil {
		lock.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrSpoolLocked, dir, err)
	}
	s := &spool{
		dir: dir, name: name, maxBytes: maxBytes, m: m, log: log, lock: lock,
		segBytes: min(max(maxBytes/8, minSegBytes), maxSegBytes),
	}
	if err := s.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	m.spoolBytes(name, s.bytes)
	return s, nil
}

func ensurePrivateDir(dir string, log *slog.Logger) error {
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("sink: spool directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("sink: spool directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("sink: spool directory %s is not a directory", dir)
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		// Make the new directory's entry durable too.
		if err := syncDir(filepath.Dir(dir)); err != nil {
			return fmt.Errorf("sink: spool directory: %w", err)
		}
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		// Decisions carry names: nobody else reads the spool.
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("sink: spool directory: %w", err)
		}
		log.Warn("spool directory permissions tightened to 0700", "dir", dir, "was", perm.String())
	}
	return nil
}

// recover lists the segments, deletes those the ack says were delivered,
// and checks the rest record by record: a damaged record ends its segment.
func (s *spool) recover() error {
	ack, haveAck := s.readAck()
	_ = os.Remove(filepath.Join(s.dir, ackTempName)) // a checkpoint cut short
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("sink: spool directory: %w", err)
	}
	var seqs []uint64
	for _, e := range entries {
		if seq, ok := parseSegName(e.Name()); ok && e.Type().IsRegular() {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	s.nextSeq = 1
	if haveAck {
		s.nextSeq = ack.seq + 1 // never reuse a number the ack has passed
		s.saved = ack
	}
	for _, seq := range seqs {
		s.nextSeq = max(s.nextSeq, seq+1)
		path := s.segPath(seq)
		if haveAck && seq < ack.seq {
			if err := os.Remove(path); err != nil {
				return fmt.Errorf("sink: spool: remove delivered segment: %w", err)
			}
			continue
		}
		start := segHeaderLen
		if haveAck && seq == ack.seq {
			start = max(int64(ack.off), segHeaderLen)
		}
		seg, from, ok := s.scanSegment(seq, start)
		if !ok {
			continue
		}
		if len(s.segs) == 0 {
			s.rSeq, s.rPos = seq, from
		}
		s.segs = append(s.segs, seg)
		s.bytes += seg.size
		s.pending += seg.records
	}
	if len(s.segs) == 0 {
		s.rSeq, s.rPos = s.nextSeq, segHeaderLen
	}
	if s.pending > 0 {
		s.log.Info("spool: decisions from a previous run to deliver", "sink", s.name, "dir", s.dir,
			"count", s.pending, "segments", len(s.segs), "bytes", s.bytes)
	}
	return nil
}

// scanSegment checks one segment left by an earlier run. It returns where
// the reader should begin (start, or the segment's first record when start
// is not a record boundary) and whether the segment holds anything to keep.
func (s *spool) scanSegment(seq uint64, start int64) (*spoolSegment, int64, bool) {
	path := s.segPath(seq)
	f, err := os.Open(path)
	if err != nil {
		s.m.spoolError(s.name, SpoolErrIO)
		s.log.Error("spool: cannot read a segment; leaving it in place", "sink", s.name, "segment", path, "err", err)
		return nil, 0, false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.m.spoolError(s.name, SpoolErrIO)
		s.log.Error("spool: cannot read a segment; leaving it in place", "sink", s.name, "segment", path, "err", err)
		return nil, 0, false
	}
	size := fi.Size()
	br := bufio.NewReaderSize(f, 64<<10)
	var magic [segHeaderLen]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil || string(magic[:]) != spoolMagic {
		if size <= segHeaderLen {
			// Created, then the process died before its first record
			// was synced: no record was ever acknowledged from it.
			s.log.Warn("spool: removing a segment without records (cut short at creation)", "sink", s.name,
				"segment", path, "bytes", size)
			_ = os.Remove(path)
			return nil, 0, false
		}
		s.m.spoolError(s.name, SpoolErrCorrupt)
		s.log.Error("spool: not a spool segment (bad header); leaving it in place, not delivered", "sink", s.name,
			"segment", path, "bytes", size)
		return nil, 0, false
	}
	seg := &spoolSegment{seq: seq, size: size, sealed: true}
	var (
		off       = segHeaderLen
		total     int
		startSeen bool
		hdr       [frameHeaderLen]byte
	)
	for off < size {
		if off == start {
			startSeen = true
		}
		n, err := readFrame(br, hdr[:], &s.rbuf, size-off)
		if err != nil {
			s.m.spoolError(s.name, SpoolErrCorrupt)
			s.log.Error("spool: torn or damaged record; skipping the rest of the segment, delivering the records before it",
				"sink", s.name, "segment", path, "offset", off, "bytes_skipped", size-off, "err", err)
			break
		}
		total++
		if startSeen {
			seg.records++
		}
		off += n
	}
	seg.end = off
	from := start
	if off == start {
		startSeen = true // acknowledged to the end
	}
	if !startSeen {
		// The ack names no record boundary here: deliver the whole
		// segment again rather than guess (the INSERT is idempotent).
		s.log.Warn("spool: acknowledged offset is not a record boundary; delivering the segment again", "sink", s.name,
			"segment", path, "offset", start)
		seg.records, from = total, segHeaderLen
	}
	return seg, from, true
}

// readFrame reads one record from r, with at most room bytes left in the
// segment, into *buf; it returns the record's size on disk.
func readFrame(r io.Reader, hdr []byte, buf *[]byte, room int64) (int64, error) {
	if room < frameHeaderLen {
		return 0, fmt.Errorf("%w: %d bytes, shorter than a record header", errDamaged, room)
	}
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, frameReadErr(err)
	}
	n := int64(binary.BigEndian.Uint32(hdr[0:4]))
	if n == 0 || n > maxRecordBytes {
		return 0, fmt.Errorf("%w: impossible length %d", errDamaged, n)
	}
	if n > room-frameHeaderLen {
		return 0, fmt.Errorf("%w: length %d runs past the end (%d bytes left)", errDamaged, n, room-frameHeaderLen)
	}
	*buf = slices.Grow((*buf)[:0], int(n))[:n]
	if _, err := io.ReadFull(r, *buf); err != nil {
		return 0, frameReadErr(err)
	}
	sum := crc32.Update(crc32.Checksum(hdr[0:4], castagnoli), castagnoli, *buf)
	if sum != binary.BigEndian.Uint32(hdr[4:8]) {
		return 0, fmt.Errorf("%w: checksum mismatch", errDamaged)
	}
	return frameHeaderLen + n, nil
}

// frameReadErr: a file shorter than its checked length is damage; anything
// else is the disk failing.
func frameReadErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %w", errDamaged, err)
	}
	return err
}

func appendFrame(dst, payload []byte) []byte {
	var hdr [frameHeaderLen]byte
	binary.BigEndian.PutUint32(hdr[0:4], uint32(len(payload)))
	sum := crc32.Update(crc32.Checksum(hdr[0:4], castagnoli), castagnoli, payload)
	binary.BigEndian.PutUint32(hdr[4:8], sum)
	return append(append(dst, hdr[:]...), payload...)
}

// append writes the payloads as records, all or none, and fsyncs them.
func (s *spool) append(payloads ...[]byte) error {
	var size int64
	for _, p := range payloads {
		if len(p) == 0 || len(p) > maxRecordBytes {
			return fmt.Errorf("sink: spool: record of %d bytes", len(p))
		}
		size += frameHeaderLen + int64(len(p))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errSpoolClosed
	}
	var seg *spoolSegment
	if s.w != nil {
		seg = s.segs[len(s.segs)-1]
		if seg.end > segHeaderLen && seg.end+size > s.segBytes {
			s.seal(seg)
			seg = nil
		}
	}
	need := size
	if seg == nil {
		need += segHeaderLen
	}
	if s.bytes+need > s.maxBytes {
		return fmt.Errorf("%w: %d of %d bytes in use, %d more needed", ErrSpoolFull, s.bytes, s.maxBytes, need)
	}
	buf := s.wbuf[:0]
	fresh := seg == nil
	if fresh {
		// The number is spent even if this fails: a file left by a
		// failed removal must not block every later segment.
		seq := s.nextSeq
		s.nextSeq++
		f, err := os.OpenFile(s.segPath(seq), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("sink: spool: new segment: %w", err)
		}
		seg = &spoolSegment{seq: seq}
		s.w = f
		s.segs = append(s.segs, seg)
		buf = append(buf, spoolMagic...)
	}
	for _, p := range payloads {
		buf = appendFrame(buf, p)
	}
	s.wbuf = buf
	_, err := s.w.WriteAt(buf, seg.end)
	if err == nil {
		err = s.w.Sync()
	}
	if err == nil && fresh {
		err = syncDir(s.dir) // the new file's name must survive a power cut too
	}
	if err != nil {
		s.abortAppend(seg, fresh)
		return fmt.Errorf("sink: spool write: %w", err)
	}
	seg.end += int64(len(buf))
	seg.size = seg.end
	seg.records += len(payloads)
	s.bytes += int64(len(buf))
	s.pending += len(payloads)
	s.m.spoolBytes(s.name, s.bytes)
	return nil
}

// abortAppend undoes a failed append: a new segment goes; an older one is
// cut back to its last whole record and sealed, so nothing is ever written
// after bytes of unknown state.
func (s *spool) abortAppend(seg *spoolSegment, fresh bool) {
	path := s.segPath(seg.seq)
	if fresh {
		s.w.Close()
		s.w = nil
		s.segs = s.segs[:len(s.segs)-1]
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			// Left behind, a whole record in it would be delivered
			// again at the next start: harmless, the INSERT is idempotent.
			s.log.Warn("spool: cannot remove a segment after a failed write", "sink", s.name, "segment", path, "err", err)
		}
		return
	}
	if err := s.w.Truncate(seg.end); err != nil {
		s.log.Warn("spool: cannot cut a segment back after a failed write; the next start will skip its torn tail",
			"sink", s.name, "segment", path, "err", err)
		if fi, err := s.w.Stat(); err == nil {
			s.bytes += fi.Size() - seg.size
			seg.size = fi.Size()
		}
	}
	s.seal(seg)
}

func (s *spool) seal(seg *spoolSegment) {
	if s.w != nil {
		s.w.Close()
		s.w = nil
	}
	seg.sealed = true
}

// next returns the oldest record not yet acknowledged, or ok=false when
// there is none. The slice is valid until the next call.
func (s *spool) next() (payload []byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.closed && len(s.segs) > 0 {
		seg := s.segs[0]
		if seg.seq != s.rSeq {
			s.closeReader()
			s.rSeq, s.rPos = seg.seq, segHeaderLen
		}
		if s.rPos >= seg.end {
			if !seg.sealed {
				return nil, false // caught up with the writer
			}
			s.dropHead()
			continue
		}
		if s.r == nil {
			f, err := os.Open(s.segPath(seg.seq))
			if err != nil {
				s.skipRest(seg, SpoolErrIO, err)
				continue
			}
			s.r = f
		}
		var hdr [frameHeaderLen]byte
		n, err := readFrame(io.NewSectionReader(s.r, s.rPos, seg.end-s.rPos), hdr[:], &s.rbuf, seg.end-s.rPos)
		if err != nil {
			reason := SpoolErrCorrupt
			if !errors.Is(err, errDamaged) {
				reason = SpoolErrIO
			}
			s.skipRest(seg, reason, err)
			continue
		}
		s.rNext = s.rPos + n
		return s.rbuf, true
	}
	return nil, false
}

// skipRest gives up the unread part of seg after a read failure (its checks
// passed when written or at start, so the disk itself failed): the records
// in it are lost, counted and logged.
func (s *spool) skipRest(seg *spoolSegment, reason string, err error) {
	s.m.spoolError(s.name, reason)
	s.m.dropped(s.name, DropSpoolDamaged, seg.records)
	s.log.Error("spool segment unreadable: the rest of it is skipped, its decisions are NOT DELIVERED",
		"sink", s.name, "segment", s.segPath(seg.seq), "offset", s.rPos, "decisions_lost", seg.records, "err", err)
	s.pending -= seg.records
	seg.records = 0
	seg.end = s.rPos
	if !seg.sealed && seg == s.segs[len(s.segs)-1] {
		s.seal(seg)
	}
}

// ack marks the record next returned as delivered.
func (s *spool) ack() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.rNext == 0 || len(s.segs) == 0 {
		return
	}
	seg := s.segs[0]
	s.rPos, s.rNext = s.rNext, 0
	seg.records--
	s.pending--
	s.acked++
	if s.rPos >= seg.end {
		if !seg.sealed && seg == s.segs[len(s.segs)-1] && seg.end >= min(deliveredKeepBytes, s.segBytes) {
			s.seal(seg) // the next append starts a new segment
		}
		if seg.sealed {
			s.dropHead()
		}
	}
	if s.acked >= ackEvery {
		s.checkpointLocked()
	}
}

// dropHead deletes the oldest segment, read to its end.
func (s *spool) dropHead() {
	seg := s.segs[0]
	s.closeReader()
	if err := os.Remove(s.segPath(seg.seq)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// The next start delivers it again; the INSERT is idempotent.
		s.log.Warn("spool: cannot delete a delivered segment", "sink", s.name, "segment", s.segPath(seg.seq), "err", err)
	}
	s.bytes -= seg.size
	s.pending -= seg.records // only non-zero for records skipped as damaged
	s.segs = s.segs[1:]
	if len(s.segs) > 0 {
		s.rSeq, s.rPos = s.segs[0].seq, segHeaderLen
	} else {
		// Everything delivered: the ack moves past every segment so far.
		s.rSeq, s.rPos = s.nextSeq, segHeaderLen
	}
	s.m.spoolBytes(s.name, s.bytes)
}

func (s *spool) closeReader() {
	if s.r != nil {
		s.r.Close()
		s.r = nil
	}
}

// checkpoint records the delivery position in the ack file.
func (s *spool) checkpoint() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.checkpointLocked()
	}
}

func (s *spool) checkpointLocked() {
	pos := ackPos{seq: s.rSeq, off: uint64(s.rPos)}
	if pos == s.saved {
		s.acked = 0
		return
	}
	buf := make([]byte, 0, ackLen)
	buf = append(buf, ackMagic...)
	buf = binary.BigEndian.AppendUint64(buf, pos.seq)
	buf = binary.BigEndian.AppendUint64(buf, pos.off)
	buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoli))
	tmp := filepath.Join(s.dir, ackTempName)
	err := os.WriteFile(tmp, buf, 0o600)
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, ackFileName))
	}
	if err != nil {
		_ = os.Remove(tmp)
		if !s.ackFails {
			// Harmless for the data: a crash now only makes the next
			// start deliver more records again.
			s.log.Warn("spool: cannot record the delivery position", "sink", s.name, "dir", s.dir, "err", err)
			s.ackFails = true
		}
		return
	}
	s.ackFails = false
	s.saved, s.acked = pos, 0
}

func (s *spool) readAck() (ackPos, bool) {
	path := filepath.Join(s.dir, ackFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ackPos{}, false
	}
	if err != nil || len(b) != ackLen || string(b[:len(ackMagic)]) != ackMagic ||
		crc32.Checksum(b[:ackLen-4], castagnoli) != binary.BigEndian.Uint32(b[ackLen-4:]) {
		s.log.Warn("spool: delivery position unreadable; delivering every segment from its start", "sink", s.name,
			"file", path, "err", err)
		return ackPos{}, false
	}
	return ackPos{
		seq: binary.BigEndian.Uint64(b[len(ackMagic):]),
		off: binary.BigEndian.Uint64(b[len(ackMagic)+8:]),
	}, true
}

// pendingCount is the number of records not yet acknowledged.
func (s *spool) pendingCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

// close seals the spool, deletes a fully delivered last segment, records the
// position and releases the directory.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if len(s.segs) > 0 {
		last := s.segs[len(s.segs)-1]
		if s.w != nil {
			s.seal(last)
		}
		if head := s.segs[0]; s.rNext == 0 && head.seq == s.rSeq && s.rPos >= head.end {
			s.dropHead()
		}
	}
	s.checkpointLocked()
	s.closed = true
	s.closeReader()
	return s.lock.Close() // releases the flock
}

func (s *spool) segPath(seq uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s%020d%s", segPrefix, seq, segSuffix))
}

func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutPrefix(name, segPrefix)
	if !ok {
		return 0, false
	}
	if digits, ok = strings.CutSuffix(digits, segSuffix); !ok || len(digits) != 20 {
		return 0, false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	return seq, err == nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
