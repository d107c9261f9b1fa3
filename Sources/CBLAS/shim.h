#include <cblas.h>
/* OpenBLAS extensions that cblas.h declares: openblas_get_config, openblas_get_corename,
   openblas_get_num_threads, openblas_set_num_threads. Nothing else is needed. */
