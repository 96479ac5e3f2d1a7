/* a.h: nothing */
