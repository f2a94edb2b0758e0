/* Stand-in for FreeRTOS task.h: the two calls the app makes. See README.md. */
#ifndef EDGECTL_STANDIN_TASK_H
#define EDGECTL_STANDIN_TASK_H

#include "FreeRTOS.h"

TickType_t xTaskGetTickCount(void);
void vTaskDelay(const TickType_t xTicksToDelay);

#endif
