// Dev-time microbenchmark: the own AVX2 kernels against OpenBLAS on one thread (hot operands, best of 9/7).
// clang -O3 -I Sources/CEmbedTuneAVX2/include -I /usr/include/x86_64-linux-gnu/openblas-pthread \
//   bench/gemm/lora_products.c Sources/CEmbedTuneAVX2/*.c -lopenblas -lm -o /tmp/b && OPENBLAS_NUM_THREADS=1 /tmp/b
#include "embedtune_avx2.h"
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static float* rnd(long n){float*p=aligned_alloc(64,4*n);for(long i=0;i<n;i++)p[i]=rand()/(float)RAND_MAX-.5f;return p;}
#define BEST(expr) ({double b=1e9; for(int r=0;r<9;r++){double t=now(); expr; t=now()-t; if(t<b)b=t;} b*1e3;})
int main(){
  int N=4250, R=8; int shapes[][2]={{384,384},{384,1536},{1536,384}};
  for(int s=0;s<3;s++){
    int in=shapes[s][0], out=shapes[s][1];
    float *x=rnd((long)N*in),*W=rnd((long)out*in),*A=rnd(R*in),*B=rnd(out*R),*u=rnd(N*R),*y=rnd((long)N*out),*dy=rnd((long)N*out),*du=rnd(N*R),*dx=rnd((long)N*in),*gA=rnd(R*in),*gB=rnd(out*R);
    printf("in %d out %d:\n",in,out);
    printf("  u=x·Aᵀ        openblas %.2f ms  own %.2f ms\n", BEST(cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasTrans,N,R,in,1,x,in,A,in,0,u,R)), BEST(embedtune_sgemm_avx2(1,N,R,in,1,x,in,A,false,in,0,0,u,R)));
    printf("  y+=s·u·Bᵀ     openblas %.2f ms  own %.2f ms\n", BEST(cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasTrans,N,out,R,4,u,R,B,R,1,y,out)), BEST(embedtune_sgemm_avx2(1,N,out,R,4,u,R,B,false,R,1,0,y,out)));
    printf("  base x·Wᵀ     openblas %.2f ms  own %.2f ms  fused(+s·u·Bᵀ) %.2f ms\n", BEST(cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasTrans,N,out,in,1,x,in,W,in,0,y,out)), BEST(embedtune_sgemm_avx2(1,N,out,in,1,x,in,W,false,in,0,0,y,out)), BEST(embedtune_sgemm_sum_avx2(1,N,out,in,x,in,W,false,in,1,R,4,u,R,B,R,0,0,y,out,0,0)));
    printf("  du=s·dy·B     openblas %.2f ms  own %.2f ms\n", BEST(cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,N,R,out,4,dy,out,B,R,0,du,R)), BEST(embedtune_sgemm_avx2(0,N,R,out,4,dy,out,B,false,R,0,0,du,R)));
    printf("  dB+=s·dyᵀ·u   openblas %.2f ms  own %.2f ms\n", BEST(cblas_sgemm(CblasRowMajor,CblasTrans,CblasNoTrans,out,R,N,4,dy,out,u,R,1,gB,R)), BEST(embedtune_sgemm_tn_avx2(R,out,N,4,u,R,dy,out,gB,R,1)));
    printf("  dA+=duᵀ·x     openblas %.2f ms  own %.2f ms\n", BEST(cblas_sgemm(CblasRowMajor,CblasTrans,CblasNoTrans,R,in,N,1,du,R,x,in,1,gA,in)), BEST(embedtune_sgemm_tn_avx2(R,in,N,1,du,R,x,in,gA,in,0)));
    printf("  dx+=du·A      openblas %.2f ms  own %.2f ms\n", BEST(cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,N,in,R,1,du,R,A,in,1,dx,in)), BEST(embedtune_sgemm_avx2(0,N,in,R,1,du,R,A,false,in,1,0,dx,in)));
  }
}
