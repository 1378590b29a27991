#include "embedtune_gemm.h"
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
typedef struct {int own,m,n,k,tb; float*a,*b,*c;} job;
static void* work(void*p){job*j=p; if(j->own) embedtune_sgemm(j->tb,j->m,j->n,j->k,j->a,j->k,j->b,j->tb?j->k:j->n,false,j->c,j->n);
 else cblas_sgemm(CblasRowMajor,CblasNoTrans,j->tb?CblasTrans:CblasNoTrans,j->m,j->n,j->k,1,j->a,j->k,j->b,j->tb?j->k:j->n,0,j->c,j->n); return 0;}
int main(){
  int shapes[][4]={{8500,384,384,1},{8500,1536,384,1},{8500,384,1536,1},{8500,384,384,0},{8500,384,1536,0},{8500,1536,384,0}};
  for(int s=0;s<6;s++){
    int m=shapes[s][0],n=shapes[s][1],k=shapes[s][2],tb=shapes[s][3];
    float*a=malloc(4L*m*k),*b=malloc(4L*n*k),*c=malloc(4L*m*n);
    for(long i=0;i<(long)m*k;i++)a[i]=(rand()/(float)RAND_MAX)-.5f;
    for(long i=0;i<(long)n*k;i++)b[i]=(rand()/(float)RAND_MAX)-.5f;
    double best[2]={1e9,1e9};
    for(int r=0;r<8;r++) for(int own=0;own<2;own++){
      for(long q=0;q<(long)m*k;q+=16) a[q]*=1.0000001f;
      job j0={own,m/2,n,k,tb,a,b,c}, j1={own,m-m/2,n,k,tb,a+(long)(m/2)*k,b,c+(long)(m/2)*n};
      double t=now(); pthread_t th; pthread_create(&th,0,work,&j1); work(&j0); pthread_join(th,0); t=now()-t; if(t<best[own])best[own]=t;
    }
    double fl=2.0*m*n*k;
    printf("m%5d n%5d k%5d %s 2 threads: openblas %6.1f own %6.1f GFLOP/s ratio %.3f\n",m,n,k,tb?"xWT":"dyW",fl/best[0]/1e9,fl/best[1]/1e9,best[0]/best[1]);
  }
}
