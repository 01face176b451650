// Package pipeline is the walk-through clearance job for one gate node:
// for each camera, frame → detect → track → quality → embed → fuse → search
// → decision. Every stage is one call into a component behind a small
// interface (cgo stays in engine/detect, engine/vision and engine/facerec);
// the decision rule lives in engine/fuse, tracking in engine/track.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"gocv.io/x/gocv"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/claims"
	"github.com/loopgate/loopgate/engine/decision"
	"github.com/loopgate/loopgate/engine/detect"
	"github.com/loopgate/loopgate/engine/fuse"
	"github.com/loopgate/loopgate/engine/quality"
	"github.com/loopgate/loopgate/engine/track"
	"github.com/loopgate/loopgate/engine/vision"
)

// Source yields a camera's newest frame; io.EOF when a finite source ends.
type Source interface {
	Name() string
	Next(ctx context.Context) (vision.Frame, error)
}

// Detector finds faces in a full-resolution frame. One per camera goroutine.
type Detector interface {
	Detect(frame gocv.Mat) ([]detect.Detection, error)
}

// Embedder embeds the face at box in frame (crop → go-face). It must be safe
// for concurrent use: faces of one frame are embedded in parallel.
type Embedder interface {
	EmbedFace(frame gocv.Mat, box image.Rectangle) (engine.Embedding, error)
}

// Searcher is the gate-scoped gallery.
type Searcher interface {
	NearestPeople(ctx context.Context, e engine.Embedding, model string, scope []string, k int) ([]engine.PersonMatch, error)
	PersonDistance(ctx context.Context, e engine.Embedding, model, externalID string) (engine.PersonMatch, error)
}

// LiveView receives annotated frames for the operators' page.
type LiveView interface {
	PublishFrame(camera string, jpeg []byte, captured time.Time)
}

// Config is the node-level pipeline configuration.
type Config struct {
	// Gate names this node's gate; Scope is the gate plus its zones: only
	// people registered for one of them are searched.
	Gate  string
	Scope []string
	// Model is the embedding model tag; only its templates are compared.
	Model   string
	Rule    fuse.Rule
	Track   track.Config
	Quality quality.Thresholds
	// MinTrackHits: a track with fewer detections is noise (a detector
	// false positive, a face glimpsed at the edge) and gets no decision.
	MinTrackHits int
	// LiveFPS bounds how often an annotated frame is encoded per camera for
	// /live (0: never).
	LiveFPS float64
}

// Validate names the bad field.
func (c Config) Validate() error {
	if c.Gate == "" || len(c.Scope) == 0 {
		return errors.New("pipeline: gate and scope are required")
	}
	if c.Model == "" {
		return errors.New("pipeline: model tag is required")
	}
	if c.MinTrackHits < 1 {
		return fmt.Errorf("pipeline: min_track_hits %d: want at least 1", c.MinTrackHits)
	}
	if err := c.Rule.Validate(); err != nil {
		return err
	}
	return c.Track.Validate()
}

// Deps are the components the pipeline drives.
type Deps struct {
	Embedder Embedder
	Searcher Searcher
	Sink     decision.Sink
	// Claims enables 1:1 mode; nil disables it.
	Claims  *claims.Registry
	Live    LiveView // may be nil
	Metrics *Metrics // may be nil
	// Observe, when set, receives every stage time as measured (benchmarks
	// and the demo compute exact percentiles from it).
	Observe func(camera, stage string, d time.Duration)
	Logger  *slog.Logger
}

// PlausibleFaceScore is the detector score a track that never passed the
// quality gate must have reached once to get a "no usable capture" deny
// rather than be dropped as detector noise (see camera.end).
const PlausibleFaceScore = 0.95

// Pipeline runs the walk-through for every camera of a node.
type Pipeline struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	// trackBase makes track ids unique across restarts of the node; each
	// camera takes its own block (cameras start concurrently).
	trackBase atomic.Int64
}

// New validates the configuration and returns a pipeline.
func New(cfg Config, deps Deps) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Embedder == nil || deps.Searcher == nil || deps.Sink == nil {
		return nil, errors.New("pipeline: embedder, searcher and sink are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	p := &Pipeline{cfg: cfg, deps: deps, log: deps.Logger}
	p.trackBase.Store(time.Now().UnixMilli() * 1000)
	return p, nil
}

// trackState is what the pipeline knows about one traveller.
type trackState struct {
	id           int64
	firstSeen    time.Time
	firstQuality *time.Time
	seen         int
	maxScore     float32 // best detector score on this track
	maxInterEye  float64 // largest face on this track (eye distance, px)
	mean         fuse.Mean
	skipped      map[string]int
	claim        *claims.Claim
	timings      decision.Timings
	// verdict is set once decided: the track is then only followed, never
	// embedded again (CPU goes to the next walker).
	verdict *fuse.Verdict
	label   string // for the live view
}

// camera is one camera's loop state.
type camera struct {
	p       *Pipeline
	name    string
	lane    string
	det     Detector
	tracker *track.Tracker
	tracks  map[int64]*trackState
	lastPub time.Time
}

// RunCamera processes src until ctx is done or src ends (then every live
// track is decided and RunCamera returns nil). det belongs to this camera.
func (p *Pipeline) RunCamera(ctx context.Context, src Source, det Detector, lane string) error {
	// Each camera gets its own track-id block so ids are unique per node.
	tr, err := track.New(p.cfg.Track, p.trackBase.Add(1_000_000))
	if err != nil {
		return err
	}
	c := &camera{p: p, name: src.Name(), lane: lane, det: det, tracker: tr, tracks: map[int64]*trackState{}}
	p.deps.Metrics.initCamera(c.name)
	for {
		f, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			c.finish(context.WithoutCancel(ctx), time.Now())
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				// Shutting down: travellers in view get no decision from
				// this node (the gate stays closed), say so.
				c.p.log.Info("camera stopping", "camera", c.name, "open_tracks", len(c.tracks))
				return nil
			}
			return fmt.Errorf("pipeline: camera %s: %w", c.name, err)
		}
		c.process(ctx, &f)
		f.Close()
	}
}

func (c *camera) process(ctx context.Context, f *vision.Frame) {
	m := c.p.deps.Metrics
	start := time.Now()
	if f.Decode > 0 {
		c.stage(StageDecode, f.Decode)
	}
	m.frame(c.name)
	dets, err := c.det.Detect(f.Mat)
	detectTime := time.Since(start)
	c.stage(StageDetect, detectTime)
	if err != nil {
		m.failed(c.name, "detect")
		c.p.log.Warn("detect failed", "camera", c.name, "seq", f.Seq, "err", err)
		return
	}
	boxes := make([]image.Rectangle, len(dets))
	for i, d := range dets {
		boxes[i] = d.Box
	}
	m.faces(c.name, len(dets))
	ids, ended := c.tracker.Update(f.Captured, boxes)
	for _, e := range ended {
		c.end(ctx, e, f.Captured)
	}
	// Quality and embedding for each undecided track's face, in parallel
	// (the embedder is a pool of recognisers).
	type work struct {
		st  *trackState
		det detect.Detection
		rep quality.Report
		emb engine.Embedding
		err error
		qd  time.Duration
		ed  time.Duration
	}
	var jobs []*work
	for i, d := range dets {
		st := c.tracks[ids[i]]
		if st == nil {
			st = &trackState{id: ids[i], firstSeen: f.Captured, skipped: map[string]int{}, label: "…"}
			c.tracks[ids[i]] = st
		}
		st.seen++
		st.maxScore = max(st.maxScore, d.Score)
		if st.verdict != nil {
			m.skipped(c.name, "decided")
			continue
		}
		st.timings.DetectMS += ms(detectTime) / float64(len(dets))
		jobs = append(jobs, &work{st: st, det: d})
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			j.rep = c.p.assess(f.Mat, j.det, len(dets))
			j.qd = time.Since(t0)
			if !j.rep.Accepted {
				return
			}
			t0 = time.Now()
			j.emb, j.err = c.p.deps.Embedder.EmbedFace(f.Mat, j.det.Box)
			j.ed = time.Since(t0)
		}()
	}
	wg.Wait()
	for _, j := range jobs {
		st := j.st
		c.stage(StageQuality, j.qd)
		st.timings.QualityMS += ms(j.qd)
		st.maxInterEye = max(st.maxInterEye, j.rep.Measures.InterEyePx)
		if !j.rep.Accepted {
			reason := j.rep.Failures[0].Check
			st.skipped[reason]++
			m.skipped(c.name, reason)
			continue
		}
		c.stage(StageEmbed, j.ed)
		st.timings.EmbedMS += ms(j.ed)
		if j.err != nil {
			reason := "no_face_in_crop"
			if !errors.Is(j.err, engine.ErrNoFace) {
				reason = "embed_error"
				m.failed(c.name, "embed")
				c.p.log.Warn("embed failed", "camera", c.name, "track", st.id, "err", j.err)
			}
			st.skipped[reason]++
			m.skipped(c.name, reason)
			continue
		}
		if st.firstQuality == nil {
			t := f.Captured
			st.firstQuality = &t
			if c.p.deps.Claims != nil {
				if cl, ok := c.p.deps.Claims.Take(c.lane); ok {
					st.claim = &cl
				}
			}
		}
		st.mean.Add(j.emb, qualityWeight(j.rep))
		if st.mean.N() >= c.p.cfg.Rule.MinFrames {
			c.judge(ctx, st, f.Captured, false)
		}
	}
	m.activeTracks(c.name, len(c.tracker.Live()))
	c.stage(StageFrame, time.Since(start))
	c.publish(f, dets, ids)
}

// stage records one stage time in the metrics and the observer.
func (c *camera) stage(stage string, d time.Duration) {
	c.p.deps.Metrics.stage(c.name, stage, d)
	if c.p.deps.Observe != nil {
		c.p.deps.Observe(c.name, stage, d)
	}
}

// qualityWeight weights a frame in the fused mean by face size: larger
// faces carry more detail into the 150x150 chip dlib aligns (saturating at
// 60 px between the eyes, about a 150 px face).
func qualityWeight(r quality.Report) float64 {
	return max(0.1, min(r.Measures.InterEyePx, 60)/60)
}

func (p *Pipeline) assess(frame gocv.Mat, d detect.Detection, faces int) quality.Report {
	m := quality.FromLandmarks(faces, d.Landmarks, float64(d.Score))
	pm, err := vision.MeasureFace(frame, d.Box)
	if err != nil {
		// An unmeasurable box (degenerate, off-frame) is a face too small
		// to use: report it as such rather than embedding it blind.
		m.InterEyePx = 0
	} else {
		m.SharpnessVar, m.Brightness, m.Contrast = pm.SharpnessVar, pm.Brightness, pm.Contrast
	}
	return quality.Assess(m, p.cfg.Quality)
}

// judge searches with the fused embedding and emits a decision when the
// rule reaches one. final: the track has ended.
func (c *camera) judge(ctx context.Context, st *trackState, captured time.Time, final bool) {
	rule := c.p.cfg.Rule
	var v fuse.Verdict
	if st.mean.N() < rule.MinFrames {
		v = rule.Identify(nil, st.mean.N(), time.Now(), final)
	} else {
		mean := st.mean.Embedding()
		t0 := time.Now()
		var err error
		if st.claim != nil {
			var pm engine.PersonMatch
			pm, err = c.p.deps.Searcher.PersonDistance(ctx, mean, c.p.cfg.Model, st.claim.Person.ExternalID)
			if err == nil {
				v = rule.Verify(pm, st.mean.N(), time.Now(), final)
			}
		} else {
			var matches []engine.PersonMatch
			matches, err = c.p.deps.Searcher.NearestPeople(ctx, mean, c.p.cfg.Model, c.p.cfg.Scope, 2)
			if err == nil {
				v = rule.Identify(matches, st.mean.N(), time.Now(), final)
			}
		}
		sd := time.Since(t0)
		c.stage(StageSearch, sd)
		st.timings.SearchMS += ms(sd)
		switch {
		case errors.Is(err, engine.ErrGalleryStale):
			// The node's gallery copy is too old to know of revocations:
			// deny at once, saying why (engine/localgallery's rule).
			c.p.deps.Metrics.failed(c.name, "search")
			v = fuse.Verdict{Decided: true, Outcome: decision.Deny, Reason: decision.GalleryStale, Detail: err.Error()}
		case err != nil:
			// Fail secure: without the gallery nobody is opened. Keep the
			// evidence; a later frame retries, and track end denies.
			c.p.deps.Metrics.failed(c.name, "search")
			c.p.log.Error("gallery search failed", "camera", c.name, "track", st.id, "err", err)
			if !final {
				return
			}
			v = fuse.Verdict{Decided: true, Outcome: decision.Deny, Reason: decision.UnknownFace,
				Detail: "gallery unreachable: " + err.Error()}
		}
	}
	if !v.Decided {
		if v.Distance != nil {
			st.label = fmt.Sprintf("… %.2f", *v.Distance)
		}
		return
	}
	c.emit(st, v, captured)
}

func (c *camera) emit(st *trackState, v fuse.Verdict, captured time.Time) {
	now := time.Now()
	ev := decision.Event{
		ID:         fmt.Sprintf("%s/%s/%d", c.p.cfg.Gate, c.name, st.id),
		Decision:   v.Outcome,
		Reason:     v.Reason,
		Detail:     v.Detail,
		Gate:       c.p.cfg.Gate,
		Lane:       c.lane,
		Camera:     c.name,
		TrackID:    st.id,
		Distance:   v.Distance,
		Margin:     v.Margin,
		Threshold:  c.p.cfg.Rule.Threshold,
		FramesUsed: st.mean.N(),
		FramesSeen: st.seen,
		FirstSeen:  st.firstSeen,
		DecidedAt:  now,
		Timings:    st.timings,
	}
	if len(st.skipped) > 0 {
		ev.SkippedFrames = st.skipped
	}
	if st.claim != nil {
		ev.Claim = st.claim.Person.ExternalID
		ev.Threshold = c.p.cfg.Rule.ClaimThreshold
	}
	if v.Person != nil {
		ev.Person = &decision.Person{ID: v.Person.PersonID, ExternalID: v.Person.ExternalID, Name: v.Person.Name}
	}
	ev.Timings.CaptureToDecisionMS = ms(now.Sub(captured))
	m := c.p.deps.Metrics
	c.stage(StageCaptureToDecision, now.Sub(captured))
	var fromFirstQuality time.Duration
	if st.firstQuality != nil {
		fq := *st.firstQuality
		ev.FirstQuality = &fq
		fromFirstQuality = now.Sub(fq)
		ev.Timings.FirstQualityToDecisionMS = ms(fromFirstQuality)
	}
	m.decided(c.name, string(ev.Decision), string(ev.Reason), fromFirstQuality)
	st.verdict = &v
	st.label = string(v.Outcome)
	if ev.Person != nil {
		st.label += " " + ev.Person.Name
	} else {
		st.label += " " + string(v.Reason)
	}
	c.p.log.Info("decision", "camera", c.name, "track", st.id, "decision", ev.Decision, "reason", ev.Reason,
		"person", personID(ev.Person), "frames", ev.FramesUsed, "capture_to_decision_ms", round1(ev.Timings.CaptureToDecisionMS))
	c.p.deps.Sink.Send(ev)
}

// end handles a track the tracker dropped.
func (c *camera) end(ctx context.Context, e track.Ended, now time.Time) {
	st := c.tracks[e.ID]
	delete(c.tracks, e.ID)
	if st == nil || st.verdict != nil {
		return
	}
	// Not a traveller, so no decision: a track too short to be one; a
	// track that never was a plausible face (YuNet reports large boxes
	// scoring 0.76-0.91 on black or featureless frames, e.g. a covered
	// camera, while real faces score above 0.99); or a face that never came
	// close enough to be usable (a bystander far away). A face that came
	// close but never passed the quality gate (blur, pose, light) is a
	// traveller the gate could not judge: "no usable capture".
	neverUsable := st.mean.N() == 0 && (st.maxScore < PlausibleFaceScore || st.maxInterEye < c.p.cfg.Quality.MinInterEyePx)
	if e.Hits < c.p.cfg.MinTrackHits || neverUsable {
		c.p.deps.Metrics.discarded(c.name)
		return
	}
	c.judge(ctx, st, now, true)
}

// finish decides every live track when the source has ended.
func (c *camera) finish(ctx context.Context, now time.Time) {
	for _, e := range c.tracker.Flush() {
		c.end(ctx, e, now)
	}
}

func personID(p *decision.Person) string {
	if p == nil {
		return ""
	}
	return p.ExternalID
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

// publish draws the tracks onto the frame and hands it to the live view,
// at most LiveFPS times a second per camera.
func (c *camera) publish(f *vision.Frame, dets []detect.Detection, ids []int64) {
	live := c.p.deps.Live
	if live == nil || c.p.cfg.LiveFPS <= 0 {
		return
	}
	if f.Captured.Sub(c.lastPub) < time.Duration(float64(time.Second)/c.p.cfg.LiveFPS) {
		return
	}
	c.lastPub = f.Captured
	for i, d := range dets {
		st := c.tracks[ids[i]]
		if st == nil {
			continue
		}
		col := color.RGBA{255, 200, 0, 0} // pending: amber
		if st.verdict != nil {
			if st.verdict.Outcome == decision.Open {
				col = color.RGBA{0, 200, 0, 0}
			} else {
				col = color.RGBA{230, 0, 0, 0}
			}
		}
		gocv.Rectangle(&f.Mat, d.Box, col, 2)
		text := fmt.Sprintf("#%d %s", st.id%1_000_000, st.label)
		gocv.PutText(&f.Mat, text, image.Pt(d.Box.Min.X, max(12, d.Box.Min.Y-6)), gocv.FontHersheySimplex, 0.5, col, 1)
	}
	jpeg, err := vision.EncodeJPEG(f.Mat)
	if err != nil {
		return
	}
	live.PublishFrame(c.name, jpeg, f.Captured)
}
