// Dev-time microbenchmark: one layer's attention heads, the two GEMMs around a row softmax (the
// portable path's C calls) against the fused kernel; checks they agree bit for bit.
// clang -O3 -I Sources/CEmbedTuneAVX2/include -I /usr/include/x86_64-linux-gnu/openblas-pthread \
//   bench/gemm/attention_heads.c Sources/CEmbedTuneAVX2/*.c -lopenblas -lm -o /tmp/b && /tmp/b
#include "embedtune_avx2.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <math.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(void){
  int shapes[][4]={{115,32,12,0},{16,32,12,0},{128,32,12,0},{115,64,4,1},{120,128,16,1},{300,64,4,0}};  // t, d, heads, causal
  for(int s=0;s<6;s++){
    int t=shapes[s][0],d=shapes[s][1],h=shapes[s][2],causal=shapes[s][3],ld=3*h*d;
    float*qkv=malloc(4L*t*ld),*o1=malloc(4L*t*h*d),*o2=malloc(4L*t*h*d),*p1=malloc(4L*h*t*t),*p2=malloc(4L*h*t*t);
    for(long i=0;i<(long)t*ld;i++)qkv[i]=(rand()/(float)RAND_MAX)-.5f;
    float sc=1.0f/sqrtf(d);
    double b1=1e9,b2=1e9; int reps=200;
    for(int r=0;r<7;r++){
      double t0=now();
      for(int x=0;x<reps;x++) for(int hh=0;hh<h;hh++){
        float*p=p1+(long)hh*t*t;
        embedtune_sgemm(true,t,t,d,sc,qkv+hh*d,ld,qkv+h*d+hh*d,ld,false,NULL,p,t);
        embedtune_softmax_rows(p,t,t,causal);
        embedtune_sgemm(false,t,d,t,1,p,t,qkv+2*h*d+hh*d,ld,false,NULL,o1+hh*d,h*d);
      }
      t0=now()-t0; if(t0<b1)b1=t0;
      t0=now();
      for(int x=0;x<reps;x++) for(int hh=0;hh<h;hh++)
        embedtune_attention_forward(t,d,sc,causal,qkv+hh*d,ld,qkv+h*d+hh*d,ld,qkv+2*h*d+hh*d,ld,p2+(long)hh*t*t,o2+hh*d,h*d);
      t0=now()-t0; if(t0<b2)b2=t0;
    }
    int same=!memcmp(o1,o2,4L*t*h*d)&&!memcmp(p1,p2,4L*h*t*t);
    double fl=4.0*t*t*d*h*reps;
    printf("t %3d d %3d heads %2d %s  two GEMMs %6.1f us  fused %6.1f us  (%.1f vs %.1f GFLOP/s)  ratio %.2f  %s\n",t,d,h,causal?"causal":"full  ",
      b1/reps*1e6,b2/reps*1e6,fl/b1*1e-9,fl/b2*1e-9,b1/b2,same?"bit-identical":"DIFFERENT");
  }
}
