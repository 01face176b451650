package accuracy

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestParseEmbedLineTakesTheLastJSONLine(t *testing.T) {
	want := EmbedMeasure{
		BLAS: "atlas", BLASLibrary: "/usr/lib/x86_64-linux-gnu/atlas/libblas.so.3.10.3",
		Embed:      StageTiming{N: 30, P50: 41 * time.Millisecond, P99: 44 * time.Millisecond},
		Throughput: []Throughput{{PoolSize: 1, Goroutines: 2, Embeddings: 125, Elapsed: 5 * time.Second}},
	}
	line, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	out := "some banner\n{\"blas\":\"stale\"}\n" + string(line) + "\n\n"
	got, err := parseEmbedLine([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if got.BLAS != want.BLAS || got.BLASLibrary != want.BLASLibrary || got.Embed != want.Embed ||
		len(got.Throughput) != 1 || got.Throughput[0] != want.Throughput[0] {
		t.Errorf("parsed %+v, want %+v", got, want)
	}
	if _, err := parseEmbedLine([]byte("no json here\n")); err == nil {
		t.Error("output without a JSON line was accepted")
	}
	if _, err := parseEmbedLine([]byte("{not json\n")); err == nil {
		t.Error("a broken JSON line was accepted")
	}
}

func TestThroughputPerSecond(t *testing.T) {
	if got := (Throughput{Embeddings: 150, Elapsed: 5 * time.Second}).PerSecond(); got != 30 {
		t.Errorf("150 in 5 s = %v/s, want 30", got)
	}
	if got := (Throughput{Embeddings: 3}).PerSecond(); got != 0 {
		t.Errorf("no elapsed time gave %v/s, want 0", got)
	}
}

func TestSummariseStageQuantiles(t *testing.T) {
	var lat []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	s := summariseStage(lat)
	if s.N != 100 || s.P50 != 50500*time.Microsecond || s.P99 != 99010*time.Microsecond {
		t.Errorf("got %+v, want N 100, p50 50.5ms, p99 99.01ms", s)
	}
}

func TestTimeStageWarmsUpAndStopsOnError(t *testing.T) {
	calls, steps := 0, 0
	lat, err := timeStage(5, func() { steps++ }, func() error { calls++; return nil })
	if err != nil || len(lat) != 5 || calls != 6 || steps != 5 {
		t.Errorf("got %d latencies, %d calls, %d steps, err %v; want 5, 6 (one warm-up), 5, nil", len(lat), calls, steps, err)
	}
	boom := errors.New("boom")
	calls = 0
	_, err = timeStage(5, nil, func() error {
		calls++
		if calls == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || calls != 3 {
		t.Errorf("err %v after %d calls, want boom after 3", err, calls)
	}
}

func TestPipelineChartHasOneLinePerStage(t *testing.T) {
	r := &PipelineReport{Resolutions: []PipelineResolution{
		{Label: "240p", Height: 240, Stages: map[string]StageTiming{StageDecode: {N: 1, P50: 2 * time.Millisecond}}},
		{Label: "720p", Height: 720, Stages: map[string]StageTiming{StageDecode: {N: 1, P50: 20 * time.Millisecond}}},
	}}
	c := pipelineChart(r)
	if len(c.Series) != len(pipelineStages) {
		t.Fatalf("%d series, want %d", len(c.Series), len(pipelineStages))
	}
	dec := c.Series[0]
	if dec.Name != StageDecode || len(dec.XY) != 2 || dec.XY[1].X != 720 || dec.XY[1].Y != 20 {
		t.Errorf("decode series %+v, want x 240/720 and y in ms", dec)
	}
}
