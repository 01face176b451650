// Package models knows every model file the engine needs: where it comes
// from, what it must hash to, and under which licence it may be used. It
// verifies a model directory before the engine loads anything from it, and
// fills one from a local mirror or from the upstream homes.
package models

// Variant is one acceptable content for a model file. A model may have
// several: the byte-identical upstream file, a mirror's re-serialised copy
// of the same weights, or a stand-in that go-face accepts under the same name.
type Variant struct {
	// Label names what the content is, e.g. "upstream" or "debian-68pt".
	Label string
	// FileName is the file's name in a mirror directory or upstream archive;
	// it may differ from Model.Name (a stand-in installed under another name).
	FileName string
	// SHA256 is the hex digest of the uncompressed file. Empty when it is not
	// known to this project; such a variant is only accepted from an archive
	// whose ArchiveMD5 matches, and is pinned to its digest when fetched.
	SHA256 string
	// Size in bytes of the uncompressed file, 0 when unknown.
	Size int64
	// URLs of the upstream file, tried in order. A URL ending in .bz2 is an
	// archive, checked against ArchiveMD5; any other URL serves the plain
	// file, which is accepted only when SHA256 is recorded.
	URLs []string
	// ArchiveMD5 is the MD5 of the .bz2 archive at URLs as recorded by
	// independent packagers (Arch Linux's howdy PKGBUILD and others).
	ArchiveMD5 string
	Licence    string
	// Warning is printed whenever this variant is installed or loaded.
	Warning string
}

// Model is one file the engine loads from the model directory.
type Model struct {
	// Name is the file name go-face opens inside the model directory.
	Name     string
	Purpose  string
	Variants []Variant
}

const (
	dlibNet      = "http://dlib.net/files/"
	dlibModelsGH = "https://github.com/davisking/dlib-models/raw/master/"
	// opencv_zoo keeps its models in Git LFS: the media host serves the file
	// itself, and github.com's raw URL redirects there for LFS files. Should
	// either serve the LFS pointer instead, the sha256 check refuses it.
	opencvZooMedia = "https://media.githubusercontent.com/media/opencv/opencv_zoo/main/models/"
	opencvZooRaw   = "https://github.com/opencv/opencv_zoo/raw/main/models/"
)

// Manifest lists every model file, in the order they are fetched.
var Manifest = []Model{
	{
		Name:    "shape_predictor_5_face_landmarks.dat",
		Purpose: "face landmarks for alignment (dlib get_face_chip_details accepts 5 or 68 points)",
		Variants: []Variant{
			{
				Label:      "upstream",
				FileName:   "shape_predictor_5_face_landmarks.dat",
				URLs:       []string{dlibModelsGH + "shape_predictor_5_face_landmarks.dat.bz2", dlibNet + "shape_predictor_5_face_landmarks.dat.bz2"},
				ArchiveMD5: "ef591cf713630226b35b11d0e1733118",
				Licence:    "CC0 (dlib-models, public domain)",
			},
			{
				Label:    "debian-68pt",
				FileName: "shape_predictor_68_face_landmarks.dat",
				SHA256:   "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
				Size:     99693937,
				Licence:  "dlib-models 68-point model, trained on iBUG 300-W: not for commercial use",
				Warning: "the 68-point landmark model stands in for the 5-point one; its training data (iBUG 300-W) " +
					"forbids commercial use, so a deployment must install the upstream 5-point model",
			},
		},
	},
	{
		Name:    "dlib_face_recognition_resnet_model_v1.dat",
		Purpose: "128-d face embedding (dlib ResNet, 29 conv layers)",
		Variants: []Variant{
			{
				Label:      "upstream",
				FileName:   "dlib_face_recognition_resnet_model_v1.dat",
				URLs:       []string{dlibModelsGH + "dlib_face_recognition_resnet_model_v1.dat.bz2", dlibNet + "dlib_face_recognition_resnet_model_v1.dat.bz2"},
				ArchiveMD5: "1b31cc4419cc8f1018117249b64bd683",
				Licence:    "CC0 (dlib-models, public domain)",
			},
			{
				Label:    "faceapi-port",
				FileName: "dlib_face_recognition_resnet_model_v1.dat",
				SHA256:   "cdb1d47b961fe310ef1f3aa2974c5f65d29c079346760f6b6785c7e405f7266a",
				Size:     22466154,
				Licence:  "weights CC0 (dlib-models); face-api.js port MIT",
				Warning: "embedding weights are dlib's network re-serialised from face-api.js's uint8-quantised port, " +
					"not the upstream file (LFW deep-funneled View 2: 98.83% vs dlib's published 99.38%)",
			},
		},
	},
	{
		Name:    "mmod_human_face_detector.dat",
		Purpose: "CNN (MMOD) face detector, the fallback when the HOG detector finds no face",
		Variants: []Variant{
			{
				Label:      "upstream",
				FileName:   "mmod_human_face_detector.dat",
				SHA256:     "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
				Size:       729940,
				URLs:       []string{dlibModelsGH + "mmod_human_face_detector.dat.bz2", dlibNet + "mmod_human_face_detector.dat.bz2"},
				ArchiveMD5: "5edccec8ac713d743be4865ff6ead7f7",
				Licence:    "CC0 (dlib-models, public domain)",
			},
		},
	},
	{
		Name:    "face_detection_yunet_2022mar.onnx",
		Purpose: "YuNet face detector (OpenCV dnn): boxes and five landmarks on full frames, faces from about 10 px",
		Variants: []Variant{
			{
				// The sha256 and size are those of opencv_zoo's Git LFS pointer.
				Label:    "upstream",
				FileName: "face_detection_yunet_2022mar.onnx",
				SHA256:   "50ef07f702a31741ca46a4c0d947773b64143b9362780237bf0d427d6c79bab7",
				Size:     345478,
				URLs: []string{
					opencvZooMedia + "face_detection_yunet/face_detection_yunet_2022mar.onnx",
					opencvZooRaw + "face_detection_yunet/face_detection_yunet_2022mar.onnx",
				},
				Licence: "MIT (opencv_zoo, libfacedetection.train)",
			},
		},
	},
}

// Lookup returns the manifest entry for a model file name.
func Lookup(name string) (Model, bool) {
	for _, m := range Manifest {
		if m.Name == name {
			return m, true
		}
	}
	return Model{}, false
}

func (m Model) variant(label string) (Variant, bool) {
	for _, v := range m.Variants {
		if v.Label == label {
			return v, true
		}
	}
	return Variant{}, false
}
