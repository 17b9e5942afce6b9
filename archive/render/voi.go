package render

import (
	"image"
	"math"

	"github.com/suyashkumar/dicom/pkg/tag"

	"github.com/priorflow/priorflow/archive/dicomheader"
)

// VOIFunction is a VOI LUT Function (PS3.3 C.11.2.1.3).
type VOIFunction string

// VOI LUT Functions.
const (
	Linear      VOIFunction = "LINEAR"       // C.11.2.1.2.1
	LinearExact VOIFunction = "LINEAR_EXACT" // C.11.2.1.3.2
	Sigmoid     VOIFunction = "SIGMOID"      // C.11.2.1.3.1
)

// Window is a VOI window: Window Center and Width in the output units of
// the Modality LUT (PS3.3 C.11.2.1.2), and the function between them.
type Window struct {
	Center, Width float64
	Function      VOIFunction
}

// valid reports whether the width suits the function: at least 1 for
// LINEAR, above 0 otherwise (C.11.2.1.2.1, C.11.2.1.3).
func (w Window) valid() bool {
	if math.IsNaN(w.Center) || math.IsInf(w.Center, 0) || math.IsNaN(w.Width) || math.IsInf(w.Width, 0) {
		return false
	}
	switch w.Function {
	case Linear, "":
		return w.Width >= 1
	case LinearExact, Sigmoid:
		return w.Width > 0
	}
	return false
}

// apply maps x to [0, 255].
func (w Window) apply(x float64) float64 {
	const ymin, ymax = 0, 255
	c, wd := w.Center, w.Width
	switch w.Function {
	case Sigmoid:
		return (ymax-ymin)/(1+math.Exp(-4*(x-c)/wd)) + ymin
	case LinearExact:
		switch {
		case x <= c-wd/2:
			return ymin
		case x > c+wd/2:
			return ymax
		}
		return ((x-c)/wd+0.5)*(ymax-ymin) + ymin
	default:
		switch {
		case x <= c-0.5-(wd-1)/2:
			return ymin
		case x > c-0.5+(wd-1)/2:
			return ymax
		}
		return ((x-(c-0.5))/(wd-1)+0.5)*(ymax-ymin) + ymin
	}
}

// rescale returns the Modality LUT as Rescale Slope and Intercept (PS3.3
// C.11.1.1.2), identity when absent.
func rescale(h *dicomheader.Header) (slope, intercept float64) {
	slope, intercept = 1, 0
	if h.RescaleSlope != nil && *h.RescaleSlope != 0 {
		slope = *h.RescaleSlope
	}
	if h.RescaleIntercept != nil {
		intercept = *h.RescaleIntercept
	}
	return slope, intercept
}

// chooseWindow picks the VOI window: the requested one, else the object's
// first Window Center and Width with its VOI LUT Function, else one spanning
// the frame's values [lo, hi] after the Modality LUT.
func chooseWindow(req *Window, h *dicomheader.Header, lo, hi float64) Window {
	if req != nil && req.valid() {
		return *req
	}
	if h.WindowCenter != nil && h.WindowWidth != nil {
		w := Window{Center: *h.WindowCenter, Width: *h.WindowWidth, Function: Linear}
		if f := VOIFunction(firstString(h.Dataset, tag.VOILUTFunction)); f != "" {
			w.Function = f
		}
		if w.valid() {
			return w
		}
	}
	return Window{Center: (lo + hi) / 2, Width: max(hi-lo, 1e-9), Function: LinearExact}
}

// renderGray applies the Modality LUT, the VOI window and, for MONOCHROME1,
// inversion (PS3.3 C.11.2, C.7.6.3.1.2) to a grayscale frame.
func renderGray(f *Frame, h *dicomheader.Header, req *Window) *image.Gray {
	img := image.NewGray(image.Rect(0, 0, f.Width, f.Height))
	if len(f.Gray) == 0 {
		return img
	}
	lo, hi := f.Gray[0], f.Gray[0]
	for _, v := range f.Gray {
		lo, hi = min(lo, v), max(hi, v)
	}
	slope, icpt := rescale(h)
	mlo, mhi := float64(lo)*slope+icpt, float64(hi)*slope+icpt
	if mlo > mhi {
		mlo, mhi = mhi, mlo
	}
	w := chooseWindow(req, h, mlo, mhi)
	invert := f.PhotometricInterpretation == "MONOCHROME1"
	out := func(v int32) uint8 {
		y := uint8(math.Round(w.apply(float64(v)*slope + icpt)))
		if invert {
			y = 255 - y
		}
		return y
	}
	if span := int64(hi) - int64(lo); span < 1<<20 {
		lut := make([]uint8, span+1)
		for i := range lut {
			lut[i] = out(lo + int32(i))
		}
		for i, v := range f.Gray {
			img.Pix[i] = lut[v-lo]
		}
		return img
	}
	for i, v := range f.Gray {
		img.Pix[i] = out(v)
	}
	return img
}
