// Declarations only (include/CFuzzer.h): SwiftPM builds a C module from at least one source file.
#include "CFuzzer.h"
