package enroll_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/gif"
	stdjpeg "image/jpeg"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/engine/quality"
	"github.com/loopgate/loopgate/engine/still"
	"github.com/loopgate/loopgate/enroll"
	"github.com/loopgate/loopgate/internal/testenv"
)

// stack is the real engine: OpenCV decoding, go-face, PostgreSQL + pgvector.
type stack struct {
	g   *gallery.Gallery
	svc *enroll.Service
	id  *engine.Identifier
}

func newStack(t *testing.T) *stack {
	t.Helper()
	rec, err := facerec.New(facerec.Config{ModelDir: testenv.ModelDir(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() })
	g, _, err := gallery.Open(context.Background(), testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	stills, err := still.New(still.Config{ModelDir: testenv.ModelDir(t)}, rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stills.Close() })
	return &stack{
		g:   g,
		svc: &enroll.Service{Stills: stills, Store: g, Model: rec.ModelTag()},
		id:  &engine.Identifier{Stills: stills, Searcher: g, Model: rec.ModelTag()},
	}
}

func photo(t *testing.T, rel string) enroll.Photo {
	return enroll.Photo{Name: rel, Data: testenv.SharedFile(t, rel)}
}

func (s *stack) identifyOne(t *testing.T, rel string) engine.Identification {
	t.Helper()
	ids, _, err := s.id.IdentifyImage(context.Background(), testenv.SharedFile(t, rel))
	if err != nil {
		t.Fatalf("identify %s: %v", rel, err)
	}
	if len(ids) != 1 {
		t.Fatalf("identify %s: %d faces, want 1", rel, len(ids))
	}
	return ids[0]
}

func (s *stack) assertStats(t *testing.T, people, templates int64) {
	t.Helper()
	st, err := s.g.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.People != people || st.Templates != templates {
		t.Fatalf("gallery holds %d people, %d templates; want %d, %d", st.People, st.Templates, people, templates)
	}
}

// TestEnrolThenIdentify enrols real people and identifies them from other
// photos; a person who was never enrolled must not match.
func TestEnrolThenIdentify(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	for _, p := range []struct{ id, name, photo string }{
		{"L-KOIZUMI", "Junichiro Koizumi", "datasets/lfw/images/Junichiro_Koizumi/Junichiro_Koizumi_0001.jpg"},
		{"L-POWELL", "Colin Powell", "datasets/lfw/images/Colin_Powell/Colin_Powell_0004.jpg"},
		{"K-OBAMA", "Barack Obama", "media/knn/train/obama/obama.jpg"},
	} {
		res, err := s.svc.Enrol(ctx, enroll.Request{ExternalID: p.id, Name: p.name, Source: "test", Photos: []enroll.Photo{photo(t, p.photo)}})
		if err != nil {
			t.Fatalf("enrol %s: %v", p.id, err)
		}
		if !res.Stored.CreatedPerson || res.Stored.Added != 1 {
			t.Fatalf("enrol %s: %+v", p.id, res.Stored)
		}
	}
	s.assertStats(t, 3, 3)

	for _, c := range []struct{ probe, want string }{
		{"datasets/lfw/images/Junichiro_Koizumi/Junichiro_Koizumi_0002.jpg", "L-KOIZUMI"},
		{"datasets/lfw/images/Colin_Powell/Colin_Powell_0002.jpg", "L-POWELL"},
		{"media/knn/test/obama1.jpg", "K-OBAMA"},
	} {
		r := s.identifyOne(t, c.probe)
		if !r.Matched || r.Best.ExternalID != c.want {
			t.Errorf("%s: got %+v, want a match with %s", c.probe, r.Best, c.want)
		} else {
			t.Logf("%s -> %s at %.3f", c.probe, r.Best.ExternalID, r.Best.Distance)
		}
	}
	// Never enrolled (LFW people with a single image).
	for _, probe := range []string{
		"datasets/lfw/images/AJ_Cook/AJ_Cook_0001.jpg",
		"datasets/lfw/images/Herbert_Haupt/Herbert_Haupt_0001.jpg",
	} {
		r := s.identifyOne(t, probe)
		if r.Matched {
			t.Errorf("%s (not enrolled) matched %s at %.3f", probe, r.Best.ExternalID, r.Best.Distance)
		} else {
			t.Logf("%s -> no match, nearest %.3f", probe, r.Best.Distance)
		}
	}
}

// TestEnrolPNGThroughOpenCV: go-face reads only JPEG; a PNG must still enrol.
func TestEnrolPNGThroughOpenCV(t *testing.T) {
	s := newStack(t)
	res, err := s.svc.Enrol(context.Background(), enroll.Request{ExternalID: "LMM", Name: "Lin-Manuel Miranda", Source: "test",
		Photos: []enroll.Photo{photo(t, "media/lin-manuel-miranda.png")}})
	if err != nil || res.Stored.Added != 1 {
		t.Fatalf("PNG enrolment: %+v %v", res.Stored, err)
	}
}

func blankJPEG(t *testing.T) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 320, 240))
	for y := range 240 {
		for x := range 320 {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	var buf bytes.Buffer
	if err := stdjpeg.Encode(&buf, img, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRejectionsStoreNothing: each kind of bad photo gets its own error and
// the gallery stays empty.
func TestRejectionsStoreNothing(t *testing.T) {
	s := newStack(t)
	good := testenv.SharedFile(t, "datasets/lfw/images/Colin_Powell/Colin_Powell_0004.jpg")
	var gifBuf bytes.Buffer
	gif.Encode(&gifBuf, image.NewPaletted(image.Rect(0, 0, 8, 8), []color.Color{color.White}), nil)
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"no face", blankJPEG(t), engine.ErrNoFace},
		{"two faces", testenv.SharedFile(t, "media/two_people.jpg"), engine.ErrMultipleFaces},
		{"truncated JPEG", good[:len(good)*2/3], engine.ErrUndecodable},
		{"not an image", []byte("%PDF-1.4 this is a document"), engine.ErrUnsupportedFormat},
		{"unknown format (GIF)", gifBuf.Bytes(), engine.ErrUnsupportedFormat},
		{"too large", append(bytes.Clone(good), make([]byte, engine.DefaultImageLimits.MaxBytes)...), engine.ErrImageTooLarge},
		{"face too small", testenv.SharedFile(t, "media/obama-240p.jpg"), engine.ErrFaceTooSmall},
	}
	for _, c := range cases {
		res, err := s.svc.Enrol(context.Background(), enroll.Request{ExternalID: "X1", Name: "X", Source: "test",
			Photos: []enroll.Photo{{Name: c.name, Data: c.data}}})
		var rej *enroll.RejectedError
		if !errors.As(err, &rej) {
			t.Errorf("%s: got %v, want a RejectedError", c.name, err)
			continue
		}
		if got := res.Photos[0].Err; !errors.Is(got, c.want) {
			t.Errorf("%s: photo error %v, want %v", c.name, got, c.want)
		} else {
			t.Logf("%s: %v", c.name, got)
		}
	}
	s.assertStats(t, 0, 0)

	// One bad photo among good ones: nothing stored by default...
	req := enroll.Request{ExternalID: "P1", Name: "Colin Powell", Source: "test", Photos: []enroll.Photo{
		{Name: "good", Data: good}, {Name: "bad", Data: blankJPEG(t)},
	}}
	if _, err := s.svc.Enrol(context.Background(), req); err == nil {
		t.Fatal("mixed request stored without StoreGood")
	}
	s.assertStats(t, 0, 0)
	// ...and only the good one with StoreGood.
	req.StoreGood = true
	res, err := s.svc.Enrol(context.Background(), req)
	if err != nil || res.Stored.Added != 1 {
		t.Fatalf("StoreGood: %+v %v", res.Stored, err)
	}
	s.assertStats(t, 1, 1)
}

func TestRequestValidation(t *testing.T) {
	for _, r := range []enroll.Request{
		{ExternalID: "", Name: "Ada", Photos: []enroll.Photo{{}}},
		{ExternalID: "A 1", Name: "Ada", Photos: []enroll.Photo{{}}},
		{ExternalID: "A1'; DROP TABLE people;--", Name: "Ada", Photos: []enroll.Photo{{}}},
		{ExternalID: "A1", Name: "  ", Photos: []enroll.Photo{{}}},
		{ExternalID: "A1", Name: "Ada"},
	} {
		if err := r.Validate(); !errors.Is(err, enroll.ErrInvalidRequest) {
			t.Errorf("%+v: got %v, want ErrInvalidRequest", r, err)
		}
	}
}

// pristinMembers labels each face of the PRISTIN group photo with the
// member whose idols.json descriptors (go-face's own fixtures, made from
// other photos) are nearest: ground truth that comes from the data set, not
// from the gallery under test.
func pristinMembers(t *testing.T, ids []engine.Identification) []string {
	t.Helper()
	var doc struct {
		Idols []struct {
			ID       string `json:"id"`
			Name     string `json:"name"`
			BandName string `json:"band_name"`
		} `json:"idols"`
		Faces []struct {
			Descriptor string `json:"descriptor"`
			IdolID     string `json:"idol_id"`
		} `json:"faces"`
	}
	if err := json.Unmarshal(testenv.SharedFile(t, "datasets/idols/idols.json"), &doc); err != nil {
		t.Fatal(err)
	}
	members := map[string]string{}
	for _, i := range doc.Idols {
		if i.BandName == "PRISTIN" {
			members[i.ID] = i.Name
		}
	}
	type sample struct {
		name string
		e    engine.Embedding
	}
	var samples []sample
	for _, f := range doc.Faces {
		name, ok := members[f.IdolID]
		if !ok {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(f.Descriptor)
		if err != nil || len(raw) != 4*engine.EmbeddingDim {
			t.Fatalf("idols.json descriptor of %s: %d bytes, %v", name, len(raw), err)
		}
		var e engine.Embedding
		for i := range e {
			e[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		samples = append(samples, sample{name, e})
	}
	labels := make([]string, len(ids))
	for i, r := range ids {
		if r.Err != nil {
			continue
		}
		best := math.Inf(1)
		for _, s := range samples {
			if d := engine.Distance(s.e, r.Face.Embedding); d < best {
				labels[i], best = s.name, d
			}
		}
	}
	return labels
}

// TestIdentifyGroupPhoto: the group photo's faces are found at full
// resolution and each is searched; a member enrolled from her own single
// photo is identified on her face, and a singer not in the photo on none.
func TestIdentifyGroupPhoto(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	group := testenv.SharedFile(t, "datasets/idols/images/pristin.jpg")
	ids, tm, err := s.id.IdentifyImage(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) < 8 {
		t.Fatalf("%d faces in pristin.jpg, want at least 8 of its 10", len(ids))
	}
	for i, r := range ids {
		if r.Err != nil || r.Best != nil || r.Matched {
			t.Errorf("face %d with an empty gallery: %+v", i+1, r)
		}
		if !r.Face.Box.Overlaps(image.Rect(0, 0, 2100, 1040)) || r.Face.Box.Dx() < 40 {
			t.Errorf("face %d box %v: want a face-sized box in the 2100x1040 original", i+1, r.Face.Box)
		}
	}
	t.Logf("%d faces; decode %v, detect %v, crop+embed %v", len(ids), tm.Decode, tm.Detect, tm.Embed)

	// Enrol, each from a single photo, Nayoung (a PRISTIN member, in the
	// photo) and Elkie (of CLC, not in it). The enrolment quality profile is
	// being calibrated and turns both photos down for head roll; this test
	// is about identification, so it enrols with the face-count rule only.
	svc := *s.svc
	svc.Quality = &quality.Thresholds{Name: "face-count-only", MaxFaces: 1}
	for _, p := range []struct{ id, name, rel string }{
		{"I-NAYOUNG", "Nayoung", "datasets/idols/images/nayoung.jpg"},
		{"I-ELKIE", "Elkie", "datasets/idols/images/elkie.jpg"},
	} {
		if _, err := svc.Enrol(ctx, enroll.Request{ExternalID: p.id, Name: p.name, Source: "test", Photos: []enroll.Photo{photo(t, p.rel)}}); err != nil {
			t.Fatalf("enrol %s: %v", p.rel, err)
		}
	}
	ids, _, err = s.id.IdentifyImage(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	truth := pristinMembers(t, ids)
	t.Logf("faces left to right, by idols.json: %v", truth)
	at := slices.Index(truth, "Nayoung")
	if at < 0 || slices.Index(truth[at+1:], "Nayoung") >= 0 {
		t.Fatalf("idols.json places Nayoung on faces %v: want exactly one", truth)
	}
	if r := ids[at]; !r.Matched || r.Best.ExternalID != "I-NAYOUNG" {
		t.Errorf("Nayoung's face (%d, %v): got %+v, want a match with I-NAYOUNG", at+1, r.Face.Box, r.Best)
	} else {
		t.Logf("Nayoung's face (%d, %v) -> %s at %.3f", at+1, r.Face.Box, r.Best.ExternalID, r.Best.Distance)
	}
	for i, r := range ids {
		switch {
		case r.Err != nil:
			t.Errorf("face %d (%s) not searched: %v", i+1, truth[i], r.Err)
		case r.Matched && r.Best.ExternalID == "I-ELKIE":
			t.Errorf("face %d (%s) matches Elkie, who is not in the photo, at %.3f", i+1, truth[i], r.Best.Distance)
		case r.Matched && i != at:
			// The model's known weakness on East Asian faces (see
			// benchmarks/), not this path's: logged, not asserted.
			t.Logf("face %d (%s) falsely matches %s at %.3f", i+1, truth[i], r.Best.ExternalID, r.Best.Distance)
		}
	}
}

// TestEnrolGroupPhotoRejected: a group photo is refused as such, with its
// quality report, and nothing is stored.
func TestEnrolGroupPhotoRejected(t *testing.T) {
	s := newStack(t)
	res, err := s.svc.Enrol(context.Background(), enroll.Request{ExternalID: "G1", Name: "Group", Source: "test",
		Photos: []enroll.Photo{photo(t, "datasets/idols/images/pristin.jpg")}})
	var rej *enroll.RejectedError
	if !errors.As(err, &rej) {
		t.Fatalf("got %v, want a RejectedError", err)
	}
	p := res.Photos[0]
	if !errors.Is(p.Err, engine.ErrMultipleFaces) || !errors.Is(p.Err, enroll.ErrQuality) || p.Faces < 8 {
		t.Fatalf("photo error %v with %d faces, want ErrMultipleFaces and ErrQuality with at least 8 faces", p.Err, p.Faces)
	}
	if !p.Quality.Failed(quality.CheckFaceCount) || p.Quality.Accepted || p.Quality.Measures.Faces != p.Faces {
		t.Errorf("report %+v: want face_count failed for %d faces", p.Quality, p.Faces)
	}
	t.Logf("%v", p.Err)
	s.assertStats(t, 0, 0)
}

// darkened scales every pixel of a photo down, so the face is too dark
// and flat for enrolment.
func darkened(t *testing.T, data []byte, factor float64) []byte {
	t.Helper()
	src, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b := src.Bounds()
	dst := image.NewRGBA(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := src.At(x, y).RGBA()
			dst.Set(x, y, color.RGBA{uint8(float64(r>>8) * factor), uint8(float64(g>>8) * factor), uint8(float64(bl>>8) * factor), 255})
		}
	}
	var buf bytes.Buffer
	if err := stdjpeg.Encode(&buf, dst, &stdjpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestQualityReport: every photo carries its report; a photo that fails it
// is refused with every failed check, each with its limit and advice.
func TestQualityReport(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	good := testenv.SharedFile(t, "media/knn/train/obama/obama.jpg")
	cases := []struct {
		name  string
		data  []byte
		fails []string // checks that must be among the failures
		also  error
	}{
		{"small face", testenv.SharedFile(t, "media/obama-240p.jpg"), []string{quality.CheckFaceTooSmall}, engine.ErrFaceTooSmall},
		{"dark", darkened(t, good, 0.25), []string{quality.CheckTooDark, quality.CheckLowContrast}, nil},
	}
	for _, c := range cases {
		res, err := s.svc.Enrol(ctx, enroll.Request{ExternalID: "Q1", Name: "Q", Source: "test", Photos: []enroll.Photo{{Name: c.name, Data: c.data}}})
		if err == nil {
			t.Errorf("%s: stored", c.name)
			continue
		}
		p := res.Photos[0]
		var qe *enroll.QualityError
		if !errors.Is(p.Err, enroll.ErrQuality) || !errors.As(p.Err, &qe) || (c.also != nil && !errors.Is(p.Err, c.also)) {
			t.Errorf("%s: photo error %v, want ErrQuality (and %v)", c.name, p.Err, c.also)
			continue
		}
		if p.Quality.Accepted || p.Quality.Profile != quality.Enrolment.Name || !reflect.DeepEqual(qe.Report, p.Quality) {
			t.Errorf("%s: report %+v not attached as the rejection's", c.name, p.Quality)
		}
		for _, check := range c.fails {
			if !p.Quality.Failed(check) {
				t.Errorf("%s: %s not among the failures %v", c.name, check, p.Quality.Codes())
			}
		}
		for _, f := range p.Quality.Failures {
			if !strings.Contains(p.Err.Error(), f.Check) || !strings.Contains(p.Err.Error(), strings.TrimSuffix(f.Message, ".")) {
				t.Errorf("%s: error %q does not name %s and its advice %q", c.name, p.Err, f.Check, f.Message)
			}
		}
		t.Logf("%s: %v", c.name, p.Err)
	}
	s.assertStats(t, 0, 0)

	res, err := s.svc.Enrol(ctx, enroll.Request{ExternalID: "K-OBAMA", Name: "Barack Obama", Source: "test", Photos: []enroll.Photo{{Name: "obama.jpg", Data: good}}})
	if err != nil {
		t.Fatalf("good photo: %v", err)
	}
	p := res.Photos[0]
	if !p.Quality.Accepted || p.Quality.Profile != quality.Enrolment.Name || len(p.Quality.Failures) != 0 || !(p.Quality.Measures.InterEyePx > 0) {
		t.Errorf("good photo's report: %+v", p.Quality)
	}
	if p.Width != 910 || p.Height != 1137 || !p.Face.Box.In(image.Rect(0, 0, p.Width, p.Height)) {
		t.Errorf("face %v in %dx%d: want a box in the 910x1137 original", p.Face.Box, p.Width, p.Height)
	}
	s.assertStats(t, 1, 1)
}
