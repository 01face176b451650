// Package benchmarks measures loopgate's speed on real components: OpenCV
// decoding, go-face detection and embedding on LFW faces, and pgvector
// search at several gallery sizes. Run them with `make bench`, which prints
// Go's benchmark lines (ns/op, B/op, allocs/op) for benchstat.
//
// Search benchmarks fill the gallery with random unit-scale vectors: an
// exact (sequential) pgvector scan costs the same whatever the vectors hold.
// Index benchmarks, whose cost does depend on content, come with the index.
package benchmarks
