package render

import (
	"fmt"
	"image"
	"net/url"
	"strconv"
	"strings"
)

// ParseParams reads the rendering query parameters of PS3.18 8.3.5.1 that
// this package applies: quality (8.3.5.1.2), viewport=vw,vh[,sx,sy,sw,sh]
// (8.3.5.1.3; a flipping negative sw or sh is refused) and
// window=center,width,function with function linear, linear-exact or
// sigmoid (8.3.5.1.4). Other parameters, such as annotation, are left to
// the caller. MediaType is left empty. Errors wrap ErrInvalidParameter.
func ParseParams(q url.Values) (Params, error) {
	var p Params
	if v := q.Get("quality"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return Params{}, fmt.Errorf("%w: quality %q is not an integer from 1 to 100", ErrInvalidParameter, v)
		}
		p.Quality = n
	}
	if v := q.Get("viewport"); v != "" {
		vp, err := parseViewport(v)
		if err != nil {
			return Params{}, err
		}
		p.Viewport = vp
	}
	if v := q.Get("window"); v != "" {
		w, err := parseWindow(v)
		if err != nil {
			return Params{}, err
		}
		p.Window = &w
	}
	return p, nil
}

func parseViewport(v string) (Viewport, error) {
	parts := strings.Split(v, ",")
	if len(parts) != 2 && len(parts) != 6 {
		return Viewport{}, fmt.Errorf("%w: viewport %q is not vw,vh or vw,vh,sx,sy,sw,sh", ErrInvalidParameter, v)
	}
	n := make([]int, len(parts))
	for i, s := range parts {
		x, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || x < 0 || x > 1<<16 {
			return Viewport{}, fmt.Errorf("%w: viewport %q: %q is not an integer from 0 to 65536", ErrInvalidParameter, v, s)
		}
		n[i] = x
	}
	vp := Viewport{Width: n[0], Height: n[1]}
	if vp.Width == 0 && vp.Height == 0 {
		return Viewport{}, fmt.Errorf("%w: viewport %q has neither width nor height", ErrInvalidParameter, v)
	}
	if len(n) == 6 {
		if n[4] == 0 || n[5] == 0 {
			return Viewport{}, fmt.Errorf("%w: viewport %q has an empty source region", ErrInvalidParameter, v)
		}
		vp.Source = image.Rect(n[2], n[3], n[2]+n[4], n[3]+n[5])
	}
	return vp, nil
}

func parseWindow(v string) (Window, error) {
	parts := strings.Split(v, ",")
	if len(parts) != 2 && len(parts) != 3 {
		return Window{}, fmt.Errorf("%w: window %q is not center,width[,function]", ErrInvalidParameter, v)
	}
	c, err1 := strconv.ParseFloat(strings.TrimSpace(parts[0]), 64)
	w, err2 := strconv.ParseFloat(strings.TrimSpace(parts[1]), 64)
	if err1 != nil || err2 != nil {
		return Window{}, fmt.Errorf("%w: window %q: center and width must be numbers", ErrInvalidParameter, v)
	}
	win := Window{Center: c, Width: w, Function: Linear}
	if len(parts) == 3 {
		switch strings.ToLower(strings.TrimSpace(parts[2])) {
		case "linear":
		case "linear-exact", "linear_exact":
			win.Function = LinearExact
		case "sigmoid":
			win.Function = Sigmoid
		default:
			return Window{}, fmt.Errorf("%w: window %q: function must be linear, linear-exact or sigmoid", ErrInvalidParameter, v)
		}
	}
	if !win.valid() {
		return Window{}, fmt.Errorf("%w: window %q: width too small for %s", ErrInvalidParameter, v, strings.ToLower(string(win.Function)))
	}
	return win, nil
}
