package accuracy

import (
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// ClopperPearson is the exact two-sided confidence interval for a
// proportion k/n at level conf (0.95): with k = 0 the upper bound is about
// 3.7/n, the honest limit of a small sample.
func ClopperPearson(k, n int, conf float64) (lo, hi float64) {
	if n <= 0 {
		return math.NaN(), math.NaN()
	}
	alpha := 1 - conf
	lo, hi = 0, 1
	if k > 0 {
		lo = distuv.Beta{Alpha: float64(k), Beta: float64(n - k + 1)}.Quantile(alpha / 2)
	}
	if k < n {
		hi = distuv.Beta{Alpha: float64(k + 1), Beta: float64(n - k)}.Quantile(1 - alpha/2)
	}
	return lo, hi
}
