/* keeps ddsm-test-support non-empty */
typedef int ddsm_test_support_empty;
