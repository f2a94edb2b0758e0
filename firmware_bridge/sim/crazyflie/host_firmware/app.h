/* Stand-in for crazyflie-firmware src/modules/interface/app.h (2026.08). See README.md. */
#ifndef EDGECTL_STANDIN_APP_H
#define EDGECTL_STANDIN_APP_H

void appMain(void);

#endif
