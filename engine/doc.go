// Package engine holds loopgate's matching core in plain Go: the face and
// embedding types, the match threshold, image admission checks, and the
// interfaces behind which the cgo components (OpenCV decoding in
// engine/vision, dlib recognition in engine/facerec) and the pgvector
// gallery (engine/gallery) live.
//
// Data flows one way: image bytes → StillAnalyzer (decode at full
// resolution, detect, crop and embed each face: engine/still) → Gallery →
// Match.
package engine
