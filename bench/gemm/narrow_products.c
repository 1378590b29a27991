// Dev-time microbenchmark: the narrow (n ≤ 8) own kernel against OpenBLAS on one thread, best of 9.
// clang -O3 -I Sources/CEmbedTuneAVX2/include -I /usr/include/x86_64-linux-gnu/openblas-pthread \
//   bench/gemm/narrow_products.c Sources/CEmbedTuneAVX2/*.c -lopenblas -lm -o /tmp/b && OPENBLAS_CORETYPE=Zen OPENBLAS_NUM_THREADS=1 /tmp/b
#include "embedtune_avx2.h"
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <math.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(){
  int shapes[][4]={{3712,8,384,1},{3712,8,1536,1},{3712,8,384,0},{3712,8,1536,0},{610,8,1024,1},{610,8,3072,0},{37,5,33,1},{13,3,7,0}};
  for(int s=0;s<8;s++){
    int m=shapes[s][0],n=shapes[s][1],k=shapes[s][2],tb=shapes[s][3];
    float*a=malloc(4L*m*k),*b=malloc(4L*n*k),*c1=malloc(4L*m*n),*c2=malloc(4L*m*n),*bias=malloc(4L*n);
    for(long i=0;i<(long)m*k;i++)a[i]=(rand()/(float)RAND_MAX)-.5f;
    for(long i=0;i<(long)n*k;i++)b[i]=(rand()/(float)RAND_MAX)-.5f;
    double bo=1e9,be=1e9;
    for(int r=0;r<9;r++){
      double t=now(); cblas_sgemm(CblasRowMajor,CblasNoTrans,tb?CblasTrans:CblasNoTrans,m,n,k,0.5,a,k,b,tb?k:n,0,c1,n); t=now()-t; if(t<bo)bo=t;
      t=now(); embedtune_sgemm_avx2(tb,m,n,k,0.5,a,k,b,false,tb?k:n,false,0,c2,n); t=now()-t; if(t<be)be=t;
    }
    double md=0; for(long i=0;i<(long)m*n;i++){double d=fabs(c1[i]-c2[i]); if(d>md)md=d;}
    printf("m %5d n %d k %5d tb %d  openblas %.1f us  own %.1f us  maxdiff %.2e\n",m,n,k,tb,bo*1e6,be*1e6,md);
  }
}
