package render

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/priorflow/priorflow/archive/frames"
)

// External decoders, from Debian's dcmtk and gdcm packages. Each converts a
// DICOM file to Explicit VR Little Endian.
const (
	ToolDCMDJPEG = "dcmdjpeg" // JPEG processes 1, 2 & 4, 14 (dcmtk)
	ToolDCMDJPLS = "dcmdjpls" // JPEG-LS (dcmtk)
	ToolDCMDRLE  = "dcmdrle"  // RLE Lossless (dcmtk)
	ToolGDCMCONV = "gdcmconv" // JPEG, JPEG-LS, JPEG 2000, RLE (gdcm, with --raw)
)

// toolsFor lists, by preference, the external decoders of a Transfer Syntax.
var toolsFor = map[string][]string{
	frames.JPEGBaseline8Bit:   {ToolDCMDJPEG, ToolGDCMCONV},
	frames.JPEGExtended12Bit:  {ToolDCMDJPEG, ToolGDCMCONV},
	frames.JPEGLossless:       {ToolDCMDJPEG, ToolGDCMCONV},
	frames.JPEGLosslessSV1:    {ToolDCMDJPEG, ToolGDCMCONV},
	frames.JPEGLSLossless:     {ToolDCMDJPLS, ToolGDCMCONV},
	frames.JPEGLSNearLossless: {ToolDCMDJPLS, ToolGDCMCONV},
	frames.JPEG2000Lossless:   {ToolGDCMCONV},
	frames.JPEG2000:           {ToolGDCMCONV},
	frames.RLELossless:        {ToolDCMDRLE, ToolGDCMCONV},
}

func toolArgs(tool, in, out string) []string {
	if tool == ToolGDCMCONV {
		return []string{"--raw", in, out}
	}
	return []string{in, out}
}

// externalTool returns the first installed decoder for ts.
func (r *Renderer) externalTool(ts string) (name, path string, ok bool) {
	for _, t := range toolsFor[ts] {
		if p, found := r.tools[t]; found {
			return t, p, true
		}
	}
	return "", "", false
}

// decodeExternal writes frame n alone to a temporary DICOM file, converts it
// to Explicit VR Little Endian with an external decoder, and decodes the
// result natively.
func (r *Renderer) decodeExternal(ctx context.Context, p *frames.PixelData, n int) (*Frame, error) {
	ts := p.TransferSyntaxUID
	tool, path, ok := r.externalTool(ts)
	if !ok {
		reason := "no decoder for it is built in"
		if len(toolsFor[ts]) > 0 {
			reason = fmt.Sprintf("it needs %v installed", toolsFor[ts])
		}
		return nil, &TransferSyntaxError{UID: ts, Reason: reason}
	}
	frags, err := p.Fragments(n)
	if err != nil {
		return nil, err
	}
	o := &frames.Object{TransferSyntaxUID: ts, Header: *p.Header, Fragments: frags}
	o.Header.NumberOfFrames = 1
	l := layoutOf(p.Header)
	o.PlanarConfiguration = l.planar
	var buf bytes.Buffer
	if err := frames.Write(&buf, o); err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp(r.tempDir, "priorflow-render-")
	if err != nil {
		return nil, fmt.Errorf("decoding with %s: %w", tool, err)
	}
	defer os.RemoveAll(dir)
	in, out := filepath.Join(dir, "in.dcm"), filepath.Join(dir, "out.dcm")
	if err := os.WriteFile(in, buf.Bytes(), 0o600); err != nil {
		return nil, fmt.Errorf("decoding with %s: %w", tool, err)
	}
	cmd := exec.CommandContext(ctx, path, toolArgs(tool, in, out)...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("decoding with %s: %w", tool, ctx.Err())
		}
		return nil, fmt.Errorf("%w: %s: %v: %s", ErrDecode, tool, err, bytes.TrimSpace(msg))
	}
	f, err := os.Open(out)
	if err != nil {
		return nil, fmt.Errorf("decoding with %s: %w", tool, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("decoding with %s: %w", tool, err)
	}
	dp, err := frames.Open(f, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s output: %v", ErrDecode, tool, err)
	}
	if dp.Encapsulated {
		return nil, fmt.Errorf("%w: %s left the pixel data encapsulated", ErrDecode, tool)
	}
	raw, err := dp.Frame(1)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s output: %v", ErrDecode, tool, err)
	}
	dl := layoutOf(dp.Header)
	if dl.photometric == "PALETTE COLOR" {
		dl.palette, dl.paletteErr = l.palette, l.paletteErr
	}
	return decodeNative(raw, dl)
}
