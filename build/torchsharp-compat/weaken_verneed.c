/* Marks one version requirement (a Vernaux entry in .gnu.version_r) of an ELF64 shared
 * library as weak (VER_FLG_WEAK), so that the dynamic loader does not refuse the library
 * when the runtime lacks that version. Usage: weaken_verneed FILE VERSION
 * Exit codes: 0 patched or already weak, 1 usage or I/O error, 3 version not found. */
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char *read_file(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return NULL; }
    *size = ftell(f);
    rewind(f);
    unsigned char *buf = malloc((size_t)*size);
    if (buf && fread(buf, 1, (size_t)*size, f) != (size_t)*size) { free(buf); buf = NULL; }
    fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    if (argc != 3) { fprintf(stderr, "usage: %s FILE VERSION\n", argv[0]); return 1; }
    long size = 0;
    unsigned char *buf = read_file(argv[1], &size);
    if (!buf) { fprintf(stderr, "weaken_verneed: cannot read %s\n", argv[1]); return 1; }
    if (size < (long)sizeof(Elf64_Ehdr) || memcmp(buf, ELFMAG, SELFMAG) != 0 || buf[EI_CLASS] != ELFCLASS64) {
        fprintf(stderr, "weaken_verneed: %s is not an ELF64 file\n", argv[1]);
        return 1;
    }
    Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
    if (eh->e_shoff == 0 || eh->e_shoff + (Elf64_Off)eh->e_shnum * sizeof(Elf64_Shdr) > (Elf64_Off)size) {
        fprintf(stderr, "weaken_verneed: %s has no usable section table\n", argv[1]);
        return 1;
    }
    Elf64_Shdr *sh = (Elf64_Shdr *)(buf + eh->e_shoff);
    int found = 0, changed = 0;
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_GNU_verneed || sh[i].sh_link >= eh->e_shnum) continue;
        const char *strtab = (const char *)(buf + sh[sh[i].sh_link].sh_offset);
        Elf64_Off off = sh[i].sh_offset;
        for (Elf64_Word n = 0; n < sh[i].sh_info && off + sizeof(Elf64_Verneed) <= (Elf64_Off)size; n++) {
            Elf64_Verneed *vn = (Elf64_Verneed *)(buf + off);
            Elf64_Off aoff = off + vn->vn_aux;
            for (Elf64_Half a = 0; a < vn->vn_cnt && aoff + sizeof(Elf64_Vernaux) <= (Elf64_Off)size; a++) {
                Elf64_Vernaux *va = (Elf64_Vernaux *)(buf + aoff);
                if (strcmp(strtab + va->vna_name, argv[2]) == 0) {
                    found = 1;
                    if (!(va->vna_flags & VER_FLG_WEAK)) { va->vna_flags |= VER_FLG_WEAK; changed = 1; }
                }
                if (va->vna_next == 0) break;
                aoff += va->vna_next;
            }
            if (vn->vn_next == 0) break;
            off += vn->vn_next;
        }
    }
    if (!found) { fprintf(stderr, "weaken_verneed: %s requires no version %s\n", argv[1], argv[2]); return 3; }
    if (changed) {
        FILE *f = fopen(argv[1], "r+b");
        if (!f || fwrite(buf, 1, (size_t)size, f) != (size_t)size || fclose(f) != 0) {
            fprintf(stderr, "weaken_verneed: cannot write %s\n", argv[1]);
            return 1;
        }
    }
    free(buf);
    return 0;
}
