// Package accuracy holds loopgate's accuracy benchmarks: the LFW View 2
// verification protocol, 1:N identification on LFW and the idols set, and
// walk-through fusion rules, all run on embeddings cached on disk so that
// only the first run pays for detection and embedding.
//
// The package is plain Go: the recogniser (go-face, cgo) and the decoder
// (OpenCV, cgo) are injected through engine.Embedder and engine.Decoder, so
// the protocol math is unit-tested without models or data.
//
// Distances are Euclidean (engine.Distance), the metric of pgvector's <->
// operator; search is exact brute force over the cached embeddings.
package accuracy
