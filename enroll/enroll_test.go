package enroll_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/gif"
	stdjpeg "image/jpeg"
	"testing"

	"github.com/loopgate/loopgate/engine"
	"github.com/loopgate/loopgate/engine/facerec"
	"github.com/loopgate/loopgate/engine/gallery"
	"github.com/loopgate/loopgate/engine/vision"
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
	dec := vision.NewDecoder(engine.ImageLimits{})
	return &stack{
		g:   g,
		svc: &enroll.Service{Decoder: dec, Embedder: rec, Store: g, Model: rec.ModelTag()},
		id:  &engine.Identifier{Decoder: dec, Embedder: rec, Searcher: g, Model: rec.ModelTag()},
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
		{"L-POWELL", "Colin Powell", "datasets/lfw/images/Colin_Powell/Colin_Powell_0001.jpg"},
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
	good := testenv.SharedFile(t, "datasets/lfw/images/Colin_Powell/Colin_Powell_0001.jpg")
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
