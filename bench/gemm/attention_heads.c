// Dev-time microbenchmark: one layer's attention heads, forward and backward, as the portable
// path's C calls (GEMMs around row softmaxes) against the fused kernels; checks they agree (bit
// for bit when the probabilities are kept).
// clang -O3 -I Sources/CEmbedTuneAVX2/include -I /usr/include/x86_64-linux-gnu/openblas-pthread \
//   bench/gemm/attention_heads.c Sources/CEmbedTuneAVX2/*.c -lopenblas -lm -o /tmp/b && /tmp/b
#include "embedtune_avx2.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static float *rnd(long n){float*x=malloc(4*n);for(long i=0;i<n;i++)x[i]=(rand()/(float)RAND_MAX)-.5f;return x;}
static double maxdiff(const float*a,const float*b,long n){double m=0;for(long i=0;i<n;i++){double d=fabs(a[i]-b[i]);if(d>m)m=d;}return m;}
int main(void){
  // t, d, heads, causal; q, k, v, dO are separate (N, H·D) buffers as in the models.
  int shapes[][4]={{115,32,12,0},{16,32,12,0},{128,32,12,0},{115,64,4,1},{120,128,16,1},{300,64,4,0}};
  for(int s=0;s<6;s++){
    int t=shapes[s][0],d=shapes[s][1],h=shapes[s][2],causal=shapes[s][3],ld=h*d,reps=100;
    float *q=rnd((long)t*ld),*k=rnd((long)t*ld),*v=rnd((long)t*ld),*dout=rnd((long)t*ld);
    float *o1=calloc((long)t*ld,4),*o2=calloc((long)t*ld,4),*o3=calloc((long)t*ld,4),*p1=calloc((long)h*t*t,4),*p2=calloc((long)h*t*t,4),*ds=malloc(4L*t*t);
    float *dq1=calloc((long)t*ld,4),*dq2=calloc((long)t*ld,4),*dk1=calloc((long)t*ld,4),*dk2=calloc((long)t*ld,4),*dv1=calloc((long)t*ld,4),*dv2=calloc((long)t*ld,4);
    float sc=1.0f/sqrtf(d);
    double f1=1e9,f2=1e9,f3=1e9,b1=1e9,b2=1e9;
    for(int r=0;r<5;r++){
      double t0=now();
      for(int x=0;x<reps;x++) for(int hh=0;hh<h;hh++){
        float*p=p1+(long)hh*t*t;
        embedtune_sgemm_avx2(true,t,t,d,sc,q+hh*d,ld,k+hh*d,false,ld,false,NULL,p,t);
        embedtune_softmax_rows(p,t,t,causal);
        embedtune_sgemm_avx2(false,t,d,t,1,p,t,v+hh*d,false,ld,false,NULL,o1+hh*d,ld);
      }
      t0=now()-t0; if(t0<f1)f1=t0;
      t0=now();
      for(int x=0;x<reps;x++) for(int hh=0;hh<h;hh++)
        embedtune_attention_forward_avx2(t,d,sc,causal,q+hh*d,ld,k+hh*d,ld,v+hh*d,ld,p2+(long)hh*t*t,o2+hh*d,ld,NULL);
      t0=now()-t0; if(t0<f2)f2=t0;
      t0=now();
      for(int x=0;x<reps;x++) for(int hh=0;hh<h;hh++)
        embedtune_attention_forward_avx2(t,d,sc,causal,q+hh*d,ld,k+hh*d,ld,v+hh*d,ld,NULL,o3+hh*d,ld,NULL);
      t0=now()-t0; if(t0<f3)f3=t0;
      memset(dk1,0,4L*t*ld);memset(dv1,0,4L*t*ld);memset(dk2,0,4L*t*ld);memset(dv2,0,4L*t*ld);
      t0=now();
      for(int x=0;x<reps;x++) for(int hh=0;hh<h;hh++){
        const float*p=p1+(long)hh*t*t;
        embedtune_sgemm_tn_avx2(t,d,t,1,p,t,dout+hh*d,ld,dv1+hh*d,ld,false);
        embedtune_sgemm_avx2(true,t,t,d,1,dout+hh*d,ld,v+hh*d,false,ld,false,NULL,ds,t);
        embedtune_softmax_backward_rows(ds,p,t,t,sc);
        embedtune_sgemm_avx2(false,t,d,t,1,ds,t,k+hh*d,false,ld,false,NULL,dq1+hh*d,ld);
        embedtune_sgemm_tn_avx2(t,d,t,1,ds,t,q+hh*d,ld,dk1+hh*d,ld,false);
      }
      t0=now()-t0; if(t0<b1)b1=t0;
      t0=now();
      for(int x=0;x<reps;x++) for(int hh=0;hh<h;hh++)
        embedtune_attention_backward_avx2(t,d,sc,causal,q+hh*d,ld,k+hh*d,ld,v+hh*d,ld,dout+hh*d,ld,p2+(long)hh*t*t,dq2+hh*d,ld,dk2+hh*d,dv2+hh*d,ld,NULL);
      t0=now()-t0; if(t0<b2)b2=t0;
    }
    double fd=fmax(maxdiff(o1,o2,(long)t*ld),maxdiff(p1,p2,(long)h*t*t));
    double bd=fmax(maxdiff(dq1,dq2,(long)t*ld),fmax(maxdiff(dk1,dk2,(long)t*ld),maxdiff(dv1,dv2,(long)t*ld)));
    printf("t %3d d %3d heads %2d %s  forward %6.1f → %6.1f us (%.2f×, max|Δ| %.1e), no probs kept %6.1f us (max|Δ| %.1e)  "
      "backward %6.1f → %6.1f us (%.2f×, max|Δ| %.1e)\n", t,d,h,causal?"causal":"full  ",f1/reps*1e6,f2/reps*1e6,f1/f2,fd,
      f3/reps*1e6,maxdiff(o1,o3,(long)t*ld),b1/reps*1e6,b2/reps*1e6,b1/b2,bd);
  }
}
