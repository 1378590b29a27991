// Dev-time microbenchmark: the own AVX2 kernels against OpenBLAS on one thread (hot operands, best of 9/7).
// clang -O3 -I Sources/CEmbedTuneAVX2/include -I /usr/include/x86_64-linux-gnu/openblas-pthread \
//   bench/gemm/linear_products.c Sources/CEmbedTuneAVX2/*.c -lopenblas -lm -o /tmp/b && OPENBLAS_NUM_THREADS=1 /tmp/b
#include "embedtune_avx2.h"
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <math.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  int shapes[][4]={{4250,384,384,1},{4250,1536,384,1},{4250,384,1536,1},{4250,384,384,0},{4250,384,1536,0},{4250,1536,384,0},
                   {2000,256,256,1},{2000,1536,256,1},{2000,256,768,1},{2000,256,768,0},{2000,768,256,0},{1220,1024,1024,1},{1220,6144,1024,1},{1220,1024,3072,1},{1220,1024,3072,0}};
  for(int s=0;s<15;s++){
    int m=shapes[s][0],n=shapes[s][1],k=shapes[s][2],tb=shapes[s][3];
    float*a=malloc(4L*m*k),*b=malloc(4L*n*k),*c1=malloc(4L*m*n),*c2=malloc(4L*m*n);
    for(long i=0;i<(long)m*k;i++)a[i]=(rand()/(float)RAND_MAX)-.5f;
    for(long i=0;i<(long)n*k;i++)b[i]=(rand()/(float)RAND_MAX)-.5f;
    double bo=1e9,be=1e9;
    static float *junk; if(!junk){junk=malloc(64L<<20);}
    for(int r=0;r<7;r++){
      for(long q=0;q<(16L<<20);q+=16) junk[q]+=1;
      for(long q=0;q<(long)m*k;q+=16) a[q]*=1.0000001f;
      double t=now(); cblas_sgemm(CblasRowMajor,CblasNoTrans,tb?CblasTrans:CblasNoTrans,m,n,k,1,a,k,b,tb?k:n,0,c1,n); t=now()-t; if(t<bo)bo=t;
      for(long q=0;q<(16L<<20);q+=16) junk[q]+=1;
      for(long q=0;q<(long)m*k;q+=16) a[q]*=1.0000001f;
      t=now(); embedtune_sgemm_avx2(tb,m,n,k,1,a,k,b,false,tb?k:n,false,0,c2,n); t=now()-t; if(t<be)be=t;
    }
    double md=0; for(long i=0;i<(long)m*n;i++){double d=fabs(c1[i]-c2[i]); if(d>md)md=d;}
    double fl=2.0*m*n*k;
    printf("m%5d n%5d k%5d %s  openblas %6.1f  own %6.1f GFLOP/s  ratio %.3f  maxdiff %.2e\n",m,n,k,tb?"xWT":"dyW",fl/bo/1e9,fl/be/1e9,bo/be,md);
    free(a);free(b);free(c1);free(c2);
  }
}
