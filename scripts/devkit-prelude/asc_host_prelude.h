// Host stand-ins for what bisheng (the Ascend C device compiler) supplies itself when it compiles for the 910B
// vector core (--cce-aicore-arch=dav-c220-vec), so that g++ can parse the real asc-devkit headers with our
// kernels: -include'd by scripts/check-kernels-devkit, which checks syntax and overload resolution only. Written
// for this check from the names the headers use; no asc-devkit text is copied. Erased or stubbed:
// - address-space qualifiers (__gm__, __ubuf__, ...) expand to nothing, so a GM and a UB pointer are one type;
// - every hardware intrinsic the basic API calls (copy_gm_to_ubuf, vadd, set_flag, ...) is one variadic template
//   returning int64_t, so calls to them are not checked (the project's files call only the AscendC API);
// - the compiler's enums (pipe_t, event_t, ...) get names only, with values of our own;
// - impl/utils/debug/asc_aicore_dump_impl.h (DumpTensor's back end) is skipped: its asc_dump overloads differ only
//   in address space, which a host compiler cannot tell apart; the five functions other headers call are stubs.
#ifndef ASCEND_COLD_DEVKIT_PRELUDE_H
#define ASCEND_COLD_DEVKIT_PRELUDE_H
#include <cmath>    // the headers #include <cstddef> inside a namespace and call ::sqrt, ::abs:
#include <cstddef>  // the device compiler's implicit declarations, here included first
#include <cstdint>
#include <cstdlib>

// Target macros of a dav-c220-vec compile: __NPU_ARCH__ selects the dav_c220 implementation, __DAV_VEC__ the
// vector core (SPLIT_CORE_VEC, g_coreType == AIV), as asc-devkit's own generators test them
// (tools/build/asc_op_compile_base/asc_op_compiler/ascendc_compile_gen_code.py, config/ascend910b.py).
// ASCENDC_CPU_DEBUG stays undefined: that mode needs CANN's tikicpulib (stub_def.h), not in asc-devkit.
#define __NPU_ARCH__ 2201
#define __DAV_VEC__ 1
#define __DAV_C220_VEC__ 1
#define __CCE_IS_AICORE__ 1

// Address spaces and function kinds.
#define __gm__
#define __ubuf__
#define __cbuf__
#define __ca__
#define __cb__
#define __cc__
#define __fbuf__
#define __biasbuf__
#define __ssbuf__
#define __simt_gm__
#define __aicore__
#define __global__
#define __host__
#define __simd_callee__
#define __simd_vf__
#define __callee__
#define __simt_callee__
#define __sync_alias__
#define __sync_noalias__
#define __check_sync_alias__
#define __inout_pipe__(...)
#define __in_pipe__(...)
#define __out_pipe__(...)
#define block_local maybe_unused  // [[block_local]]: a per-core variable

// Builtin types.
using half = _Float16;
struct bfloat16_t {
    uint16_t bits;
    bfloat16_t() = default;
    bfloat16_t(float);
    operator float() const;
};
struct vector_bool {};
struct vector_align {};
struct vector_address {};
enum pipe_t : int { PIPE_S, PIPE_V, PIPE_M, PIPE_MTE1, PIPE_MTE2, PIPE_MTE3, PIPE_ALL, PIPE_MTE4, PIPE_MTE5, PIPE_V2,
                    PIPE_FIX };
enum event_t : int { EVENT_ID0, EVENT_ID1, EVENT_ID2, EVENT_ID3, EVENT_ID4, EVENT_ID5, EVENT_ID6, EVENT_ID7 };
enum cache_line_t : int { SINGLE_CACHE_LINE, ENTIRE_DATA_CACHE };
enum dcci_dst_t : int { CACHELINE_ALL, CACHELINE_UB, CACHELINE_OUT, CACHELINE_ATOMIC };
enum Order_t : int { VALUE_INDEX, INDEX_VALUE, ONLY_VALUE, ONLY_INDEX };
enum pad_t : int { PAD_NONE };
enum ub_addr8_t : int { VA0, VA1, VA2, VA3, VA4, VA5, VA6, VA7 };
enum vld_half_t : int { L128, H128 };
enum addr_cal_mode_t : int { inc, dec };
enum mem_dsb_t : int {};
enum mem_t : int {};
enum atomic_type_t : int {};
enum atomic_op_t : int {};
enum QuantMode_t : int {
    NoQuant, F322F16, F322BF16, DEQF16, VDEQF16, DEQS16, VDEQS16, REQ8, VREQ8, REQ4, VREQ4, QF322B8_PRE,
    VQF322B8_PRE, QF162B8_PRE, VQF162B8_PRE, QF162S4_PRE, VQF162S4_PRE, QF162S16_PRE, VQF162S16_PRE, QF322F16_PRE,
    VQF322F16_PRE, QF322BF16_PRE, VQF322BF16_PRE, QS322BF16_PRE, VQS322BF16_PRE, QF322F32_PRE, VQF322F32_PRE,
    QF322FP8_PRE, VQF322FP8_PRE, QF322HIF8_PRE, VQF322HIF8_PRE, QF322HIF8_PRE_HYBRID, VQF322HIF8_PRE_HYBRID
};
// Assumption: the pipes are also visible as AscendC::PIPE_X, the spelling of asc-devkit's docs
// (docs/en/contributing/testing.md) and of kernels/kernel_common.h; the headers themselves write PIPE_X.
namespace AscendC {
using ::pipe_t;
using ::PIPE_S, ::PIPE_V, ::PIPE_M, ::PIPE_MTE1, ::PIPE_MTE2, ::PIPE_MTE3, ::PIPE_ALL, ::PIPE_FIX;
}  // namespace AscendC
// The headers call __asc_aicore functions unqualified from namespace AscendC on the device path (e.g.
// impl/basic_api/kernel_prof_trace.h) and add this directive themselves only on the CPU path.
namespace __asc_aicore {}
using namespace __asc_aicore;

// Intrinsics: any arguments, an int64_t result. R(X, b): the rounding variants b{a,c,f,r,z};
// D(X, p): p0 .. p9.
#define ASC_FN(n) template <class... A> int64_t n(A&&...);
#define R(X, b) X(b##a) X(b##c) X(b##f) X(b##r) X(b##z)
#define D(X, p) X(p##0) X(p##1) X(p##2) X(p##3) X(p##4) X(p##5) X(p##6) X(p##7) X(p##8) X(p##9)
#define ASC_INTRINSICS(X) \
    X(__ib_set_stub) X(__ib_wait_stub) X(__sync_all_stub) X(bcnt0) X(bcnt1) X(clz) X(conv_f322f16o) X(conv_f322s32a) \
    X(conv_f322s32c) X(conv_f322s32f) X(conv_f322s32r) X(copy_cbuf_to_bt) X(copy_cbuf_to_fbuf) X(copy_cbuf_to_gm) \
    X(copy_gm_to_cbuf) X(copy_gm_to_cbuf_multi_nd2nz_b16) X(copy_gm_to_cbuf_multi_nd2nz_b32s) \
    X(copy_gm_to_cbuf_multi_nd2nz_b8) X(copy_gm_to_ubuf) X(copy_gm_to_ubuf_align_b16) X(copy_gm_to_ubuf_align_b32) \
    X(copy_gm_to_ubuf_align_b8) X(copy_matrix_cbuf_to_cc) X(copy_matrix_cc_to_cbuf) X(copy_matrix_cc_to_gm) \
    X(copy_ubuf_to_gm) X(copy_ubuf_to_gm_align_b16) X(copy_ubuf_to_gm_align_b32) X(copy_ubuf_to_gm_align_b8) \
    X(copy_ubuf_to_ubuf) X(create_ca_matrix) X(create_ca_matrix_bf16) X(create_cb_matrix) X(create_cb_matrix_bf16) \
    X(create_cbuf_matrix) X(create_cbuf_matrix_bf16) X(dc_preload) X(dcci) X(dsb) X(ffts_cross_core_sync) \
    X(get_acc_val) X(get_arch_ver) X(get_block_idx) X(get_block_num) X(get_buf) X(get_cmpmask) X(get_condition_flag) \
    X(get_coreid) X(get_ctrl) X(get_ffts_base_addr) X(get_fpc) X(get_icache_prl_st) X(get_imm) X(get_l2_in_main) \
    X(get_l2_vaddr_base) X(get_lpcnt) X(get_max_min_cnt) X(get_overflow_status) X(get_para_base) X(get_pc) \
    X(get_repeat_ceiling) X(get_rsvd_cnt) X(get_st_atomic_cfg) X(get_stack_phy_base) X(get_status) \
    X(get_subblockdim) X(get_subblockid) X(get_sys_cnt) X(get_vms4_sr) X(hset_flag) X(hwait_flag) \
    X(img2colv2_cbuf_to_ca) X(img2colv2_cbuf_to_ca_s4) X(img2colv2_cbuf_to_cb) X(img2colv2_cbuf_to_ub) X(ld_dev) \
    X(load_cbuf_to_ca) X(load_cbuf_to_ca_s4) X(load_cbuf_to_ca_transpose) X(load_cbuf_to_cb) X(load_cbuf_to_cb_s4) \
    X(load_cbuf_to_cb_sp) X(load_cbuf_to_cb_transpose) X(load_cbuf_to_cb_transpose_s4) X(load_gm_to_ca) \
    X(load_gm_to_cb) X(load_gm_to_cbuf) X(load_image_to_cbuf) X(mad) X(mad_s4) X(mad_sp) X(pipe_barrier) X(preload) \
    X(rls_buf) X(sbitset0) X(sbitset1) X(scatter_vnchwconv_b16) X(scatter_vnchwconv_b32) X(scatter_vnchwconv_b8) \
    X(set_atomic_add) X(set_atomic_bf16) X(set_atomic_f16) X(set_atomic_f32) X(set_atomic_max) X(set_atomic_min) \
    X(set_atomic_none) X(set_atomic_s16) X(set_atomic_s32) X(set_atomic_s8) X(set_cmpmask) X(set_condition_flag) \
    X(set_ctrl) X(set_data_exp_0) X(set_data_exp_1) X(set_data_exp_2) X(set_data_exp_3) X(set_deqscale) \
    X(set_ffts_base_addr) X(set_flag) X(set_fmatrix) X(set_fmatrix_b) X(set_fpc) X(set_l0_set_value_bf16) \
    X(set_l0_set_value_h) X(set_l0a_2d) X(set_l0b_2d) X(set_l1_2d) X(set_l1_3d_size) X(set_l3d_rpt) \
    X(set_loop_size_outtoub) X(set_loop_size_ubtoout) X(set_lpcnt) X(set_lrelu_alpha) X(set_mask_count) \
    X(set_mask_norm) X(set_mov_pad_val) X(set_nd_para) X(set_pad_val_outtol1) X(set_pad_val_outtoub) X(set_padding) \
    X(set_pcie_rd_ctrl) X(set_quant_pre) X(set_st_atomic_cfg) X(set_ub_addr_upper_bound) X(set_va_reg_sb) \
    X(set_vector_mask) X(sff0) X(sff1) X(sflbits) X(st_dev) X(trap) X(vabs) X(vadd) X(vaddrelu) \
    X(vaddreluconv_f162s8) X(vaddreluconv_f322f16) X(vaddreluconv_s162s8) X(vaddreluconv_vdeqs162b8) X(vadds) \
    X(vand) X(vaxpy) X(vbitsort) X(vbrcb) X(vcadd) X(vcgadd) X(vcgmax) X(vcgmin) X(vcmax) X(vcmin) X(vcmp_eq) \
    X(vcmp_ge) X(vcmp_gt) X(vcmp_le) X(vcmp_lt) X(vcmp_ne) X(vcmpv_eq) X(vcmpv_ge) X(vcmpv_gt) X(vcmpv_le) \
    X(vcmpv_lt) X(vcmpv_ne) X(vcmpvs_eq) X(vcmpvs_ge) X(vcmpvs_gt) X(vcmpvs_le) X(vcmpvs_lt) X(vcmpvs_ne) \
    X(vconv_bf162f32) X(vconv_deq) X(vconv_deqs162b8h) X(vconv_deqs162b8l) X(vconv_f162f32) X(vconv_f162s4) \
    X(vconv_f162s8) X(vconv_f162u8) X(vconv_f322f16) X(vconv_f322f16o) X(vconv_s162f16) X(vconv_s162f32) \
    X(vconv_s322f32) X(vconv_s322s16) X(vconv_s322s64) X(vconv_s42f16) X(vconv_s642s32) X(vconv_s82f16) \
    X(vconv_u82f16) X(vconv_vdeqs162b8h) X(vconv_vdeqs162b8l) X(vcopy) X(vcpadd) X(vdiv) X(vector_dup) X(vexp) \
    X(vgather) X(vld_va_reg) X(vln) X(vlrelu) X(vmadd) X(vmaddrelu) X(vmax) X(vmaxs) X(vmin) X(vmins) X(vmla) \
    X(vmrgsort4) X(vmul) X(vmulconv_f162s8) X(vmulconv_f162u8) X(vmuls) X(vnot) X(vor) X(vrec) X(vreducev2) X(vrelu) \
    X(vrsqrt) X(vsel) X(vshr) X(vsqrt) X(vstas) X(vstus) X(vsub) X(vsubrelu) X(vsubreluconv_f162s8) \
    X(vsubreluconv_f322f16) X(vsubreluconv_s162s8) X(vtranspose) X(wait_flag) X(wait_flag_dev) R(X, vconv_bf162s32) \
    R(X, vconv_f162s16) R(X, vconv_f162s32) R(X, vconv_f162s4) R(X, vconv_f162s8) R(X, vconv_f162u8) \
    R(X, vconv_f322bf16) R(X, vconv_f322f16) R(X, vconv_f322f32) R(X, vconv_f322s16) R(X, vconv_f322s32) \
    R(X, vconv_f322s64) R(X, vconv_s162f16) R(X, vconv_s322f32) R(X, vconv_s642f32) D(X, set_aipp_spr_) \
    D(X, set_aipp_spr_1) X(set_aipp_spr_20) X(set_aipp_spr_21) X(set_aipp_spr_22) X(set_aipp_spr_23) \
    X(set_aipp_spr_24) \

ASC_INTRINSICS(ASC_FN)
namespace bisheng::cce {
ASC_FN(metrics_prof_start) ASC_FN(metrics_prof_stop)
}  // namespace bisheng::cce
#undef R
#undef D

// The skipped DumpTensor back end.
#define IMPL_UTILS_DEBUG_ASC_AICORE_DUMP_IMPL_H
namespace __asc_aicore {
ASC_FN(asc_dump_gm) ASC_FN(asc_dump_ubuf) ASC_FN(asc_dump_l1buf) ASC_FN(asc_dump_cbuf) ASC_FN(asc_dump_shape_impl)
}  // namespace __asc_aicore
#undef ASC_FN

#endif
