package dimse

// StorageSOPClasses are the storage SOP classes (PS3.4 B.5) a C-GET
// proposes to receive: the images, presentation states, structured
// reports and documents a radiology prior is made of. An association has
// at most 128 presentation contexts (PS3.8 9.3.2.2), so a class missing
// from the list cannot be retrieved by C-GET; the C-GET reports its
// objects as failed sub-operations.
var StorageSOPClasses = []string{
	"1.2.840.10008.5.1.4.1.1.1",        // Computed Radiography Image
	"1.2.840.10008.5.1.4.1.1.1.1",      // Digital X-Ray Image, For Presentation
	"1.2.840.10008.5.1.4.1.1.1.1.1",    // Digital X-Ray Image, For Processing
	"1.2.840.10008.5.1.4.1.1.1.2",      // Digital Mammography X-Ray Image, For Presentation
	"1.2.840.10008.5.1.4.1.1.1.2.1",    // Digital Mammography X-Ray Image, For Processing
	"1.2.840.10008.5.1.4.1.1.1.3",      // Digital Intra-Oral X-Ray Image, For Presentation
	"1.2.840.10008.5.1.4.1.1.2",        // CT Image
	"1.2.840.10008.5.1.4.1.1.2.1",      // Enhanced CT Image
	"1.2.840.10008.5.1.4.1.1.2.2",      // Legacy Converted Enhanced CT Image
	"1.2.840.10008.5.1.4.1.1.3.1",      // Ultrasound Multi-frame Image
	"1.2.840.10008.5.1.4.1.1.4",        // MR Image
	"1.2.840.10008.5.1.4.1.1.4.1",      // Enhanced MR Image
	"1.2.840.10008.5.1.4.1.1.4.2",      // MR Spectroscopy
	"1.2.840.10008.5.1.4.1.1.4.3",      // Enhanced MR Color Image
	"1.2.840.10008.5.1.4.1.1.4.4",      // Legacy Converted Enhanced MR Image
	"1.2.840.10008.5.1.4.1.1.6.1",      // Ultrasound Image
	"1.2.840.10008.5.1.4.1.1.6.2",      // Enhanced US Volume
	"1.2.840.10008.5.1.4.1.1.7",        // Secondary Capture Image
	"1.2.840.10008.5.1.4.1.1.7.1",      // Multi-frame Single Bit Secondary Capture Image
	"1.2.840.10008.5.1.4.1.1.7.2",      // Multi-frame Grayscale Byte Secondary Capture Image
	"1.2.840.10008.5.1.4.1.1.7.3",      // Multi-frame Grayscale Word Secondary Capture Image
	"1.2.840.10008.5.1.4.1.1.7.4",      // Multi-frame True Color Secondary Capture Image
	"1.2.840.10008.5.1.4.1.1.9.1.1",    // 12-lead ECG Waveform
	"1.2.840.10008.5.1.4.1.1.9.1.2",    // General ECG Waveform
	"1.2.840.10008.5.1.4.1.1.11.1",     // Grayscale Softcopy Presentation State
	"1.2.840.10008.5.1.4.1.1.11.2",     // Color Softcopy Presentation State
	"1.2.840.10008.5.1.4.1.1.12.1",     // X-Ray Angiographic Image
	"1.2.840.10008.5.1.4.1.1.12.1.1",   // Enhanced XA Image
	"1.2.840.10008.5.1.4.1.1.12.2",     // X-Ray Radiofluoroscopic Image
	"1.2.840.10008.5.1.4.1.1.12.2.1",   // Enhanced XRF Image
	"1.2.840.10008.5.1.4.1.1.13.1.1",   // X-Ray 3D Angiographic Image
	"1.2.840.10008.5.1.4.1.1.13.1.2",   // X-Ray 3D Craniofacial Image
	"1.2.840.10008.5.1.4.1.1.13.1.3",   // Breast Tomosynthesis Image
	"1.2.840.10008.5.1.4.1.1.20",       // Nuclear Medicine Image
	"1.2.840.10008.5.1.4.1.1.66",       // Raw Data
	"1.2.840.10008.5.1.4.1.1.66.1",     // Spatial Registration
	"1.2.840.10008.5.1.4.1.1.66.4",     // Segmentation
	"1.2.840.10008.5.1.4.1.1.77.1.1",   // VL Endoscopic Image
	"1.2.840.10008.5.1.4.1.1.77.1.1.1", // Video Endoscopic Image
	"1.2.840.10008.5.1.4.1.1.77.1.2",   // VL Microscopic Image
	"1.2.840.10008.5.1.4.1.1.77.1.4",   // VL Photographic Image
	"1.2.840.10008.5.1.4.1.1.77.1.5.1", // Ophthalmic Photography 8 Bit Image
	"1.2.840.10008.5.1.4.1.1.77.1.5.4", // Ophthalmic Tomography Image
	"1.2.840.10008.5.1.4.1.1.77.1.6",   // VL Whole Slide Microscopy Image
	"1.2.840.10008.5.1.4.1.1.88.11",    // Basic Text SR
	"1.2.840.10008.5.1.4.1.1.88.22",    // Enhanced SR
	"1.2.840.10008.5.1.4.1.1.88.33",    // Comprehensive SR
	"1.2.840.10008.5.1.4.1.1.88.34",    // Comprehensive 3D SR
	"1.2.840.10008.5.1.4.1.1.88.50",    // Mammography CAD SR
	"1.2.840.10008.5.1.4.1.1.88.59",    // Key Object Selection Document
	"1.2.840.10008.5.1.4.1.1.88.67",    // X-Ray Radiation Dose SR
	"1.2.840.10008.5.1.4.1.1.88.68",    // Radiopharmaceutical Radiation Dose SR
	"1.2.840.10008.5.1.4.1.1.104.1",    // Encapsulated PDF
	"1.2.840.10008.5.1.4.1.1.104.2",    // Encapsulated CDA
	"1.2.840.10008.5.1.4.1.1.128",      // Positron Emission Tomography Image
	"1.2.840.10008.5.1.4.1.1.128.1",    // Legacy Converted Enhanced PET Image
	"1.2.840.10008.5.1.4.1.1.130",      // Enhanced PET Image
	"1.2.840.10008.5.1.4.1.1.481.1",    // RT Image
	"1.2.840.10008.5.1.4.1.1.481.2",    // RT Dose
	"1.2.840.10008.5.1.4.1.1.481.3",    // RT Structure Set
	"1.2.840.10008.5.1.4.1.1.481.5",    // RT Plan
	"1.2.840.10008.5.1.4.1.1.13.1.4",   // Breast Projection X-Ray Image, For Presentation
}

// Transfer syntaxes proposed for the objects of a C-GET (PS3.5 A.4, 10).
//
// A peer accepts one transfer syntax per presentation context, the one it
// prefers, and sends each object in the syntax of a context of its class.
// Every class is proposed uncompressed, which any peer can send and which
// loses nothing of a lossless object. The classes of most images are also
// proposed in a context of each common compressed syntax, one syntax per
// context: a peer that holds an object compressed then sends it in its own
// syntax, bytes and lossy history unchanged, rather than decompress it to
// many times its size. The 128 contexts an association may have (PS3.8
// 9.3.2.2) bound how many classes get them.
var (
	uncompressedSyntaxes = []string{ExplicitVRLittleEndian, ImplicitVRLittleEndian}
	compressedSyntaxes   = []string{
		"1.2.840.10008.1.2.4.70", // JPEG Lossless, First-Order Prediction
		"1.2.840.10008.1.2.4.80", // JPEG-LS Lossless
		"1.2.840.10008.1.2.4.90", // JPEG 2000 Lossless
		"1.2.840.10008.1.2.4.50", // JPEG Baseline (lossy)
		"1.2.840.10008.1.2.4.91", // JPEG 2000 (lossy)
	}
	// compressedClasses are the image classes proposed compressed too.
	compressedClasses = map[string]bool{
		"1.2.840.10008.5.1.4.1.1.1":    true, // Computed Radiography Image
		"1.2.840.10008.5.1.4.1.1.1.1":  true, // Digital X-Ray Image, For Presentation
		"1.2.840.10008.5.1.4.1.1.1.2":  true, // Digital Mammography X-Ray Image, For Presentation
		"1.2.840.10008.5.1.4.1.1.2":    true, // CT Image
		"1.2.840.10008.5.1.4.1.1.3.1":  true, // Ultrasound Multi-frame Image
		"1.2.840.10008.5.1.4.1.1.4":    true, // MR Image
		"1.2.840.10008.5.1.4.1.1.6.1":  true, // Ultrasound Image
		"1.2.840.10008.5.1.4.1.1.7":    true, // Secondary Capture Image
		"1.2.840.10008.5.1.4.1.1.12.1": true, // X-Ray Angiographic Image
		"1.2.840.10008.5.1.4.1.1.20":   true, // Nuclear Medicine Image
		"1.2.840.10008.5.1.4.1.1.128":  true, // Positron Emission Tomography Image
	}
)

// getContexts returns the presentation contexts of a C-GET of model: the
// model itself, then the storage SOP classes for this side as SCP.
func getContexts(model string) []PresentationContext {
	pcs := []PresentationContext{{ID: 1, AbstractSyntax: model, TransferSyntaxes: uncompressedSyntaxes}}
	add := func(sop string, ts []string) {
		pcs = append(pcs, PresentationContext{ID: byte(2*len(pcs) + 1), AbstractSyntax: sop, TransferSyntaxes: ts, SCPRole: true})
	}
	for _, sop := range StorageSOPClasses {
		add(sop, uncompressedSyntaxes)
		if compressedClasses[sop] {
			for _, ts := range compressedSyntaxes {
				add(sop, []string{ts})
			}
		}
	}
	return pcs
}
