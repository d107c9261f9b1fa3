/* cblas.h is in Debian's multiarch include folder (an alternatives link to OpenBLAS's). */
#if __has_include(<cblas.h>)
#include <cblas.h>
#elif __has_include(<openblas/cblas.h>)
#include <openblas/cblas.h>
#else
#error "cblas.h not found: install libopenblas-dev (Debian: apt-get install libopenblas-dev)"
#endif
/* OpenBLAS extensions that cblas.h declares: openblas_get_config, openblas_get_corename,
   openblas_get_num_threads, openblas_set_num_threads. Nothing else is needed. */
