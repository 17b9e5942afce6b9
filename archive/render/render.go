// Package render decodes and renders the frames of stored DICOM objects for
// the WADO-RS rendered resources (PS3.18 8.3.5, 10.4.1.1.3 /rendered) and
// thumbnails (PS3.18 10.4.1.1.4 /thumbnail, Supplement 203).
//
// Decoding turns a frame from frames.PixelData into pixel values: native
// grayscale, RGB, YBR and simple PALETTE COLOR pixel data, RLE Lossless
// (PS3.5 Annex G) and JPEG Baseline in Go, and every other compressed syntax
// through dcmtk's or gdcm's command-line decoders when they are installed
// (ErrUnsupportedTransferSyntax otherwise). Rendering applies the Modality
// LUT, a VOI window and MONOCHROME1 inversion (PS3.3 C.11), fits the result
// in the requested viewport and encodes it as image/jpeg or image/png
// (PS3.18 8.7.4).
package render

import (
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"mime"
	"os/exec"

	"golang.org/x/image/draw"

	"github.com/priorflow/priorflow/archive/frames"
)

// Rendered media types (PS3.18 8.7.4, Table 8.7.4-1).
const (
	MediaTypeJPEG = "image/jpeg"
	MediaTypePNG  = "image/png"
)

// DefaultQuality is the JPEG quality when the request gives none.
const DefaultQuality = 90

// DefaultThumbnailSize is the side of the square a thumbnail fits in when
// the request gives no viewport.
const DefaultThumbnailSize = 128

// Params are the rendering parameters of a request (PS3.18 8.3.5.1).
type Params struct {
	// MediaType is MediaTypeJPEG (the default when empty) or
	// MediaTypePNG; the HTTP layer picks it from the Accept header.
	MediaType string
	// Quality is the JPEG quality, 1 to 100; 0 means DefaultQuality
	// (8.3.5.1.2).
	Quality int
	// Viewport, when not zero, is the size the image is scaled down to fit
	// (8.3.5.1.3).
	Viewport Viewport
	// Window, when not nil, overrides the object's VOI window
	// (8.3.5.1.4).
	Window *Window
}

// Viewport is the viewport parameter (PS3.18 8.3.5.1.3): the rendered image
// fits in Width×Height, keeping its aspect ratio and never enlarged. Source,
// when not empty, is the region of the frame to render.
type Viewport struct {
	Width, Height int
	Source        image.Rectangle
}

// Renderer decodes and renders frames. It is safe for concurrent use.
type Renderer struct {
	tools   map[string]string // external decoder name → path
	tempDir string
}

// Option configures a Renderer.
type Option func(*Renderer)

// WithTempDir sets the directory for the files handed to external decoders
// (default os.TempDir()).
func WithTempDir(dir string) Option { return func(r *Renderer) { r.tempDir = dir } }

// WithTools sets the external decoders to use, by name (ToolDCMDJPEG, ...)
// to path, instead of those found on PATH. An empty map disables them.
func WithTools(tools map[string]string) Option {
	return func(r *Renderer) {
		r.tools = make(map[string]string, len(tools))
		for k, v := range tools {
			r.tools[k] = v
		}
	}
}

// New returns a Renderer that uses the external decoders found on PATH with
// exec.LookPath, unless WithTools says otherwise.
func New(opts ...Option) *Renderer {
	r := &Renderer{}
	for _, o := range opts {
		o(r)
	}
	if r.tools == nil {
		r.tools = map[string]string{}
		for _, t := range []string{ToolDCMDJPEG, ToolDCMDJPLS, ToolDCMDRLE, ToolGDCMCONV} {
			if p, err := exec.LookPath(t); err == nil {
				r.tools[t] = p
			}
		}
	}
	return r
}

// Tools returns the external decoders the Renderer uses, name to path.
func (r *Renderer) Tools() map[string]string {
	out := make(map[string]string, len(r.tools))
	for k, v := range r.tools {
		out[k] = v
	}
	return out
}

// Decode decodes frame number n (from 1) of p.
func (r *Renderer) Decode(ctx context.Context, p *frames.PixelData, n int) (*Frame, error) {
	f, err := r.decode(ctx, p, n)
	if err != nil {
		return nil, fmt.Errorf("render.Decode(frame %d): %w", n, err)
	}
	return f, nil
}

func (r *Renderer) decode(ctx context.Context, p *frames.PixelData, n int) (*Frame, error) {
	l := layoutOf(p.Header)
	ts := p.TransferSyntaxUID
	switch {
	case frames.IsNative(ts), ts == frames.EncapsulatedUncompressedExplicitVRLittleEndian:
		b, err := p.Frame(n)
		if err != nil {
			return nil, err
		}
		return decodeNative(b, l)
	case ts == frames.RLELossless:
		b, err := p.Frame(n)
		if err != nil {
			return nil, err
		}
		px, err := decodeRLE(b, l.rows, l.cols, l.spp, l.bitsAllocated)
		if err != nil {
			return nil, err
		}
		l.planar = 0 // decodeRLE interleaves samples
		return decodeNative(px, l)
	case ts == frames.JPEGBaseline8Bit:
		b, err := p.Frame(n)
		if err != nil {
			return nil, err
		}
		f, err := decodeJPEG(b, l)
		if err == nil {
			return f, nil
		}
		if _, _, ok := r.externalTool(ts); !ok {
			return nil, err
		}
	}
	return r.decodeExternal(ctx, p, n)
}

// Render decodes frame n (from 1) of p and renders it: grayscale frames go
// through the Modality LUT, the VOI window (params.Window, else the
// object's, else the frame's range) and MONOCHROME1 inversion; the image is
// then cropped and scaled to params.Viewport.
func (r *Renderer) Render(ctx context.Context, p *frames.PixelData, n int, params Params) (image.Image, error) {
	f, err := r.decode(ctx, p, n)
	if err != nil {
		return nil, fmt.Errorf("render.Render(frame %d): %w", n, err)
	}
	var img image.Image = f.Color
	if f.Gray != nil {
		img = renderGray(f, p.Header, params.Window)
	}
	img, err = fit(img, params.Viewport)
	if err != nil {
		return nil, fmt.Errorf("render.Render(frame %d): %w", n, err)
	}
	return img, nil
}

// Thumbnail renders a representative frame of p, the middle one, scaled to
// fit params.Viewport, or a DefaultThumbnailSize square when the viewport
// is zero (PS3.18 10.4.1.1.4).
func (r *Renderer) Thumbnail(ctx context.Context, p *frames.PixelData, params Params) (image.Image, error) {
	if params.Viewport.Width == 0 && params.Viewport.Height == 0 {
		params.Viewport.Width, params.Viewport.Height = DefaultThumbnailSize, DefaultThumbnailSize
	}
	return r.Render(ctx, p, (p.NumberOfFrames()+1)/2, params)
}

// fit crops img to vp.Source and scales it down to fit in vp, keeping its
// aspect ratio; it never enlarges.
func fit(img image.Image, vp Viewport) (image.Image, error) {
	if vp.Width < 0 || vp.Height < 0 {
		return nil, fmt.Errorf("%w: viewport %d×%d", ErrInvalidParameter, vp.Width, vp.Height)
	}
	src := img.Bounds()
	if !vp.Source.Empty() {
		src = vp.Source.Add(src.Min).Intersect(src)
		if src.Empty() {
			return nil, fmt.Errorf("%w: viewport source %v outside the %v image", ErrInvalidParameter, vp.Source, img.Bounds().Size())
		}
	}
	w, h := src.Dx(), src.Dy()
	scale := 1.0
	if vp.Width > 0 {
		scale = min(scale, float64(vp.Width)/float64(w))
	}
	if vp.Height > 0 {
		scale = min(scale, float64(vp.Height)/float64(h))
	}
	if scale >= 1 && src == img.Bounds() {
		return img, nil
	}
	dr := image.Rect(0, 0, max(1, int(float64(w)*scale+0.5)), max(1, int(float64(h)*scale+0.5)))
	var dst draw.Image
	if _, ok := img.(*image.Gray); ok {
		dst = image.NewGray(dr)
	} else {
		dst = image.NewRGBA(dr)
	}
	if scale >= 1 {
		draw.Copy(dst, image.Point{}, img, src, draw.Src, nil)
		return dst, nil
	}
	draw.CatmullRom.Scale(dst, dr, img, src, draw.Src, nil)
	return dst, nil
}

// Encode writes img in the media type of params (PS3.18 8.7.4): image/jpeg
// at params.Quality, or image/png. Media type parameters are ignored.
func Encode(w io.Writer, img image.Image, params Params) error {
	mt := params.MediaType
	if mt == "" {
		mt = MediaTypeJPEG
	}
	if base, _, err := mime.ParseMediaType(mt); err == nil {
		mt = base
	}
	var err error
	switch mt {
	case MediaTypeJPEG:
		q := params.Quality
		if q == 0 {
			q = DefaultQuality
		}
		if q < 1 || q > 100 {
			return fmt.Errorf("render.Encode: %w: quality %d", ErrInvalidParameter, q)
		}
		err = jpeg.Encode(w, img, &jpeg.Options{Quality: q})
	case MediaTypePNG:
		err = png.Encode(w, img)
	default:
		return fmt.Errorf("render.Encode: %w: %s", ErrUnsupportedMediaType, params.MediaType)
	}
	if err != nil {
		return fmt.Errorf("render.Encode: %w", err)
	}
	return nil
}
