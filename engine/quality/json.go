package quality

import (
	"encoding/json"
	"math"
	"strconv"
)

// finite is a float64 that encodes NaN and ±Inf as JSON null: encoding/json
// refuses them, and a pose from degenerate landmarks is NaN. Decoding null
// into a float64 leaves it 0.
type finite float64

func (f finite) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, v, 'g', -1, 64), nil
}

// MarshalJSON encodes the measures with non-finite values as null.
func (m Measures) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Faces         int    `json:"faces"`
		InterEyePx    finite `json:"inter_eye_px"`
		SharpnessVar  finite `json:"sharpness_var"`
		Brightness    finite `json:"brightness"`
		Contrast      finite `json:"contrast"`
		YawDeg        finite `json:"yaw_deg"`
		RollDeg       finite `json:"roll_deg"`
		DetectorScore finite `json:"detector_score"`
	}{m.Faces, finite(m.InterEyePx), finite(m.SharpnessVar), finite(m.Brightness), finite(m.Contrast),
		finite(m.YawDeg), finite(m.RollDeg), finite(m.DetectorScore)})
}

// MarshalJSON encodes the failure with a non-finite value as null.
func (f Failure) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Check   string `json:"check"`
		Value   finite `json:"value"`
		Limit   finite `json:"limit"`
		Message string `json:"message"`
	}{f.Check, finite(f.Value), finite(f.Limit), f.Message})
}
