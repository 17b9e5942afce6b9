package dicomheader

// ValidUID reports whether s is a valid UID per PS3.5 9.1: one to 64
// characters, made of numeric components separated by ".", where each component
// is non-empty and has no leading zero unless it is the single digit "0".
// Trailing NUL padding (PS3.5 6.2, VR UI) must be removed before the check.
func ValidUID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
			continue
		}
		// s[start:i] is one component.
		if i == start {
			return false
		}
		if s[start] == '0' && i-start > 1 {
			return false
		}
		start = i + 1
	}
	return true
}
