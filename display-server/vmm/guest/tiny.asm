; Oriel's tiny test guest: a freestanding 64-bit program that exercises the VMM end to
; end in a few thousand instructions (KVM on the CI machines emulates guest kernel code
; at about a million instructions a second, so it must stay small).
;
; Entered in 64-bit mode with paging on (the VMM identity-maps the low 4 GiB) and:
;   rdi = framebuffer base, rsi = width, rdx = height, rcx = bytes per line,
;   r8 = RAM pages to dirty per timer tick (0: none), r9..r10 = the RAM they cycle over.
; It paints a test picture, reports "ready" on COM1 and on the status port, then halts
; between interrupts. Each PS/2 key press (scan code set 1, as the i8042 translates)
; draws an 8x8 glyph of its code in the next cell of a text area and echoes the code on
; COM1; each PS/2 mouse byte recolours a marker in the top-right corner. Delete reboots
; the machine (i8042 reset line) and Escape switches it off (status port). Given pages
; to dirty, the PIT ticks 100 times a second and each tick writes a counter into the
; next r8 pages of the window (a memory-writing workload for migration benchmarks).
;
; Integer instructions only: no SSE, x87, XSAVE or int3.

bits 64
default rel
org 0x100000

%define COM1 0x3f8
%define STATUS_PORT 0x510          ; the VMM's guest-status port
%define STATUS_READY 1
%define STATUS_POWER_OFF 2
%define BACKGROUND 0x00102040
%define GLYPH_ON 0x00f0f0f0
%define GLYPH_OFF 0x00303030
%define CELLS_TOP 40               ; the text area starts below the test picture

start:
    cli
    mov rsp, 0x80000
    mov [fb_base], rdi
    mov [fb_width], rsi
    mov [fb_height], rdx
    mov [fb_stride], rcx
    mov [dirty_per_tick], r8
    mov [dirty_start], r9
    mov [dirty_next], r9
    mov [dirty_end], r10

    ; background
    xor r8, r8                     ; y
.fill_row:
    cmp r8, [fb_height]
    jae .filled
    mov rdi, r8
    imul rdi, [fb_stride]
    add rdi, [fb_base]
    mov rcx, [fb_width]
    mov eax, BACKGROUND
    rep stosd
    inc r8
    jmp .fill_row
.filled:
    ; test picture: four coloured bars along the top
    mov r8, 0                      ; x
    mov r9, 8                      ; y
    mov r10, 0x00ff0000
    call bar
    mov r8, 40
    mov r10, 0x0000ff00
    call bar
    mov r8, 80
    mov r10, 0x000000ff
    call bar
    mov r8, 120
    mov r10, 0x00ffff00
    call bar

    call setup_idt
    call setup_pic
    call setup_i8042
    call setup_pit

    lea rsi, [msg_ready]
    call serial_puts
    mov dx, STATUS_PORT
    mov al, STATUS_READY
    out dx, al
    sti
.idle:
    hlt
    jmp .idle

; bar: a 32x16 rectangle at (r8, r9) of colour r10d.
bar:
    push r11
    xor r11, r11
.row:
    cmp r11, 16
    jae .done
    mov rdi, r9
    add rdi, r11
    imul rdi, [fb_stride]
    add rdi, [fb_base]
    lea rdi, [rdi + r8 * 4]
    mov rcx, 32
    mov eax, r10d
    rep stosd
    inc r11
    jmp .row
.done:
    pop r11
    ret

setup_idt:
    lea rdi, [idt]
    xor ecx, ecx
.entry:
    lea rax, [fault]
    cmp ecx, 0x20
    jne .not_timer
    lea rax, [irq_timer]
.not_timer:
    cmp ecx, 0x21
    jne .not_kbd
    lea rax, [irq_keyboard]
.not_kbd:
    cmp ecx, 0x2c
    jne .not_mouse
    lea rax, [irq_mouse]
.not_mouse:
    cmp ecx, 0x20
    jb .set
    cmp ecx, 0x2f
    ja .set
    cmp ecx, 0x21
    jbe .set
    cmp ecx, 0x2c
    je .set
    lea rax, [irq_spurious]
.set:
    mov word [rdi], ax             ; offset 15:0
    mov word [rdi + 2], 0x08       ; code selector
    mov byte [rdi + 4], 0
    mov byte [rdi + 5], 0x8e       ; present, 64-bit interrupt gate
    shr rax, 16
    mov word [rdi + 6], ax         ; offset 31:16
    shr rax, 16
    mov dword [rdi + 8], eax       ; offset 63:32
    mov dword [rdi + 12], 0
    add rdi, 16
    inc ecx
    cmp ecx, 48
    jb .entry
    lidt [idt_pointer]
    ret

; The 8259 pair: IRQs 0-15 on vectors 0x20-0x2f, only the keyboard (1), the cascade (2)
; and the mouse (12) unmasked, and the timer (0) when there are pages to dirty.
setup_pic:
    mov al, 0x11
    out 0x20, al
    out 0xa0, al
    mov al, 0x20
    out 0x21, al
    mov al, 0x28
    out 0xa1, al
    mov al, 4
    out 0x21, al
    mov al, 2
    out 0xa1, al
    mov al, 1
    out 0x21, al
    out 0xa1, al
    mov al, 0xf9
    cmp qword [dirty_per_tick], 0
    je .mask
    mov al, 0xf8
.mask:
    out 0x21, al
    mov al, 0xef
    out 0xa1, al
    ret

; PIT channel 0 at 100 Hz (rate generator), when there are pages to dirty.
setup_pit:
    cmp qword [dirty_per_tick], 0
    je .done
    mov al, 0x34
    out 0x43, al
    mov ax, 11932                  ; 1193182 Hz / 100
    out 0x40, al
    mov al, ah
    out 0x40, al
.done:
    ret

; A timer tick: the next dirty_per_tick pages of the window get this tick's count.
irq_timer:
    push rax
    push rcx
    push rdi
    inc qword [dirty_pass]
    mov rax, [dirty_pass]
    mov rcx, [dirty_per_tick]
    mov rdi, [dirty_next]
.page:
    mov [rdi], rax
    add rdi, 4096
    cmp rdi, [dirty_end]
    jb .more
    mov rdi, [dirty_start]
.more:
    dec rcx
    jnz .page
    mov [dirty_next], rdi
    mov al, 0x20
    out 0x20, al
    pop rdi
    pop rcx
    pop rax
    iretq

; Mouse reporting on, then keyboard and mouse interrupts and translation to set 1. The
; mouse's acknowledgement is read with interrupts off in the controller, so no interrupt
; is left pending for it.
setup_i8042:
    mov al, 0x60                   ; write the command byte
    out 0x64, al
    mov al, 0x44                   ; translate, system flag, no interrupts yet
    out 0x60, al
    mov al, 0xa8                   ; enable the aux port
    out 0x64, al
    mov al, 0xd4                   ; next byte goes to the mouse
    out 0x64, al
    mov al, 0xf4                   ; enable data reporting
    out 0x60, al
.wait_ack:
    in al, 0x64
    test al, 1
    jz .wait_ack
    test al, 0x20                  ; from the mouse?
    jnz .ack
    in al, 0x60                    ; a key typed while booting: dropped, as during POST
    jmp .wait_ack
.ack:
    in al, 0x60                    ; the mouse's 0xfa
    mov al, 0x60
    out 0x64, al
    mov al, 0x47                   ; keyboard and mouse interrupts on
    out 0x60, al
    ret

irq_keyboard:
    push rax
    push rcx
    push rdx
    push rsi
    push rdi
    push r8
    push r9
    push r10
    push r11
    in al, 0x60
    cmp al, 0xe0
    jne .not_prefix
    mov byte [extended], 0x80
    jmp .eoi
.not_prefix:
    test al, 0x80
    jnz .release
    movzx r10d, al
    xor r10b, [extended]           ; extended keys get glyphs of their own
    mov byte [extended], 0
    cmp r10b, 0x53 | 0x80          ; Delete: reboot through the i8042, as Linux does
    je .reboot
    cmp r10b, 0x01                 ; Escape: switch off through the status port
    je .power_off
    call draw_glyph
    mov al, r10b
    call serial_echo
    jmp .eoi
.release:
    mov byte [extended], 0
    jmp .eoi
.reboot:
    mov al, 0xfe
    out 0x64, al
    jmp .eoi
.power_off:
    mov dx, STATUS_PORT
    mov al, STATUS_POWER_OFF
    out dx, al
.eoi:
    mov al, 0x20
    out 0x20, al
    pop r11
    pop r10
    pop r9
    pop r8
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rax
    iretq

; draw_glyph: the 8x8 glyph of code r10b in the next cell. Row r of the glyph is the code
; rotated left by r: bit c set draws GLYPH_ON at column c, clear GLYPH_OFF. Every pixel of
; the cell is written, so the pages it dirties are exactly those of its 8 rows.
draw_glyph:
    mov rax, [fb_width]
    shr rax, 3                     ; cells per row
    mov rcx, [cursor]
    xor edx, edx
    push rax
    mov rax, rcx
    pop rcx
    div rcx                        ; rax = cell row, rdx = cell column
    mov r8, rdx
    shl r8, 3                      ; x
    mov r9, rax
    shl r9, 3
    add r9, CELLS_TOP              ; y
    mov rax, r9
    add rax, 8
    cmp rax, [fb_height]
    jbe .fits
    mov qword [cursor], 0          ; the text area is full: start again at the top
    jmp draw_glyph
.fits:
    inc qword [cursor]
    xor r11, r11                   ; glyph row
.row:
    mov rdi, r9
    add rdi, r11
    imul rdi, [fb_stride]
    add rdi, [fb_base]
    lea rdi, [rdi + r8 * 4]
    mov dl, r10b
    mov cl, r11b
    rol dl, cl
    mov ecx, 8
.pixel:
    mov eax, GLYPH_OFF
    test dl, 1
    jz .store
    mov eax, GLYPH_ON
.store:
    mov [rdi], eax
    add rdi, 4
    shr dl, 1
    dec ecx
    jnz .pixel
    inc r11
    cmp r11, 8
    jb .row
    ret

irq_mouse:
    push rax
    push rcx
    push rdi
    push r11
    in al, 0x60
    add [mouse_bytes], al
    inc byte [mouse_bytes + 1]
    ; a 4x4 marker in the top-right corner, coloured by the bytes seen
    movzx eax, word [mouse_bytes]
    imul eax, eax, 0x00010307
    and eax, 0x00ffffff
    xor r11, r11
.row:
    mov rdi, r11
    imul rdi, [fb_stride]
    add rdi, [fb_base]
    mov rcx, [fb_width]
    lea rdi, [rdi + rcx * 4 - 16]
    mov ecx, 4
    rep stosd
    inc r11
    cmp r11, 4
    jb .row
    mov al, 0x20
    out 0xa0, al
    out 0x20, al
    pop r11
    pop rdi
    pop rcx
    pop rax
    iretq

irq_spurious:
    push rax
    mov al, 0x20
    out 0xa0, al
    out 0x20, al
    pop rax
    iretq

; An exception: report it on COM1 and stop.
fault:
    lea rsi, [msg_fault]
    call serial_puts
.stop:
    cli
    hlt
    jmp .stop

; serial_puts: the NUL-terminated string at rsi to COM1.
serial_puts:
    mov dx, COM1
.next:
    lodsb
    test al, al
    jz .done
    out dx, al
    jmp .next
.done:
    ret

; serial_echo: "key XX\n" for the code in al.
serial_echo:
    mov r11b, al
    lea rsi, [msg_key]
    call serial_puts
    mov al, r11b
    shr al, 4
    call hex_digit
    mov al, r11b
    and al, 0x0f
    call hex_digit
    mov al, 10
    out dx, al
    ret

hex_digit:
    mov dx, COM1
    add al, '0'
    cmp al, '9'
    jbe .out
    add al, 'a' - '9' - 1
.out:
    out dx, al
    ret

msg_ready: db "oriel tiny guest: ready", 10, 0
msg_fault: db "oriel tiny guest: exception", 10, 0
msg_key: db "key ", 0

align 8
fb_base: dq 0
fb_width: dq 0
fb_height: dq 0
fb_stride: dq 0
cursor: dq 0
extended: db 0
mouse_bytes: dw 0
align 8
dirty_per_tick: dq 0
dirty_start: dq 0
dirty_next: dq 0
dirty_end: dq 0
dirty_pass: dq 0

align 16
idt_pointer:
    dw 48 * 16 - 1
    dq idt
align 16
idt: times 48 * 16 db 0
